"""Runs ``parsec.kad`` machines over real libp2p streams.

One loop (``_drive``) runs every machine — lookups, provides, crawls — through the engine's
``Machine`` interface (``parsec.kad.machine``): it sends what ``poll`` asks for, each
request in its own task through one transport function (``_transport``: a ``Request`` out
as a kad message, the answer back as a ``Reply`` or ``Failure``), feeds the outcomes back
with ``trio.current_time``, and sleeps until the next outcome or the machine's next
deadline. A ``Recorder`` (``parsec.kad.trace``, shared with the simulator) counts the RPCs
in the operation's ``Trace``, times the answers, keeps the path bound and puts the peers
that answered into the routing table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import trio

from parsec.kad import Lookup, LookupResult, PeerRef, key_of
from parsec.kad.constants import REFRESH_CPLS
from parsec.kad.crawl import Crawler, CrawlResult
from parsec.kad.fleets import refresh_keys
from parsec.kad.lookup_types import Goal
from parsec.kad.machine import DELIVERED, Failure, Machine, Outcome, Reply, Request
from parsec.kad.provide import ProvideOperation, ProvideResult
from parsec.kad.path_bound import PathBound
from parsec.kad.trace import Recorder, Trace, provide_error
from parsec.net import wire
from parsec.net.node import DhtNode, RpcError

__all__ = ["Trace", "bootstrap", "find_first_provider", "refresh_buckets", "run_crawl", "run_lookup",
           "run_provide"]

_KIND_TO_WIRE = {"find_node": wire.FIND_NODE, "get_providers": wire.GET_PROVIDERS, "add_provider": wire.ADD_PROVIDER}

Transport = Callable[[Request], Awaitable[Outcome]]


def _transport(node: DhtNode, key: bytes) -> Transport:
    """Carries one request of an operation on ``key`` (a request's own ``key`` wins): a kad
    message to its peer, the answer's peers learnt (addresses kept) and returned."""
    announcements: dict[bytes, object] = {}  # ADD_PROVIDER by key, built at the first store of each

    async def exchange(request: Request) -> Outcome:
        asked = request.key or key
        try:
            if request.kind == "add_provider":
                announce = announcements.get(asked)
                if announce is None:
                    announce = announcements[asked] = wire.request(wire.ADD_PROVIDER, asked, provider=node.self_wire())
                await node.rpc(request.peer, announce, expect_reply=False)
                return DELIVERED
            reply = await node.rpc(request.peer, wire.request(_KIND_TO_WIRE[request.kind], asked))
        except RpcError as error:
            return Failure(str(error))
        return Reply(_closer(node, reply), _providers(node, reply))

    return exchange


async def _drive(machine: Machine, transport: Transport, recorder: Recorder, *,
                 nursery: trio.Nursery | None = None) -> None:
    """Poll ``machine``, send its requests (each in its own task), apply outcomes.

    Returns once the machine is ``returnable``. Requests still in flight are cancelled,
    unless ``nursery`` is given: then the loop goes on there in the background until the
    machine is done (optimistic provide's stores that finish after the caller was
    answered; a finished lookup's stragglers, whose streams take milliseconds to close).
    """
    outcomes_in, outcomes_out = trio.open_memory_channel(math.inf)
    answered = trio.Event()

    async def one(request: Request) -> None:
        outcomes_in.send_nowait((request, await transport(request)))

    def apply(request: Request, outcome: Outcome) -> None:
        now = trio.current_time()
        machine.on_outcome(request, outcome, now)
        recorder.settled(request, outcome, now)

    async def loop(task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as requests:
            while not machine.done:
                now = trio.current_time()
                for request in machine.poll(now):
                    recorder.sent(request, now)
                    requests.start_soon(one, request)
                if machine.returnable:
                    answered.set()
                    if nursery is None or machine.done:
                        break
                deadline = machine.next_deadline()
                with trio.move_on_at(deadline if deadline is not None else math.inf):
                    apply(*await outcomes_out.receive())
                    while not machine.done:  # apply all that already arrived before polling again
                        try:
                            apply(*outcomes_out.receive_nowait())
                        except trio.WouldBlock:
                            break
            answered.set()  # done: the caller goes on while the stragglers are cancelled
            requests.cancel_scope.cancel()  # a finished machine abandons its stragglers
        answered.set()

    if nursery is None:
        await loop()
    else:
        await nursery.start(loop)
        await answered.wait()


def _closer(node: DhtNode, reply) -> list[PeerRef]:
    return [ref for ref in map(node.learn, wire.peers_from_wire(reply.closerPeers)) if ref is not None]


def _providers(node: DhtNode, reply) -> list[PeerRef]:
    found = []
    for provider in wire.peers_from_wire(reply.providerPeers):
        node.learn(provider)
        found.append(PeerRef.from_id(provider.peer_id))
    return found


def _request_cost(node: DhtNode, peer: PeerRef, reply: bool) -> float:
    """The latency model's least cost of a request to ``peer`` sent now: the connection
    set-up if there is no connection yet, plus a round trip if it expects an answer (an
    ADD_PROVIDER is written and done). 0 without a model."""
    model = node.latency
    if model is None:
        return 0.0
    remote = model.region_index_of(peer.peer_id)
    setup = 0.0 if node.connected(peer) else model.dial_delay(node.region, remote)
    return setup + (model.rtt(node.region, remote) if reply else 0.0)


def _recorder(node: DhtNode, trace: Trace, started: float) -> tuple[Recorder, PathBound]:
    bound = PathBound()
    cost = lambda peer, reply: _request_cost(node, peer, reply)  # noqa: E731
    return Recorder(trace, started, bound=bound, cost=cost, routing=node.routing), bound


async def run_lookup(node: DhtNode, key: bytes, trace: Trace, *, goal: Goal = "closest",
                     seeds: list[PeerRef] | None = None,
                     background: trio.Nursery | None = None) -> LookupResult:
    """Drive one iterative lookup for ``key`` (FIND_NODE for goal "closest", GET_PROVIDERS
    for "providers"); with ``background``, the requests still in flight when it is done are
    cancelled there, after the return (their streams take milliseconds to close)."""
    target = key_of(key)
    start_seeds = seeds if seeds is not None else node.routing.closest(target, node.k)
    now = trio.current_time()
    lookup = Lookup(target, start_seeds, now=now, goal=goal, k=node.k, rpc_timeout=node.rpc_timeout,
                    self_peer=node.me)
    recorder, bound = _recorder(node, trace, now)
    await _drive(lookup, _transport(node, key), recorder, nursery=background)
    result = lookup.result
    trace.absorb(result)
    if result.providers and node.latency is not None:
        # the round trips along the chain that led to the record (path_rtt_s), and with the
        # connection set-ups it needed (path_bound_s): no walk gets there sooner
        model = node.latency
        path = lookup.provider_path()
        trace.extra["path_rtt_s"] = round(sum(model.rtt(node.region, model.region_index_of(p.peer_id))
                                              for p in path), 4)
        trace.extra["path_bound_s"] = bound.retrieval(path)
        trace.extra["path_wait_s"] = bound.wait(path, now)  # the walk's own waits for a free slot
    return result


async def run_provide(node: DhtNode, op: ProvideOperation, key: bytes, trace: Trace,
                      background: trio.Nursery | None = None,
                      on_lookup: Callable[[LookupResult], None] | None = None) -> ProvideResult:
    """Drive a provide operation until it may answer the caller; stores still pending then
    finish in ``background`` (or before returning, without it). ``on_lookup`` sees the
    provide's walk (if it had one), whether the provide stored the record or not."""
    recorder, bound = _recorder(node, trace, trio.current_time())
    node.providers.add(key, node.me.peer_id, time.time())
    await _drive(op, _transport(node, key), recorder, nursery=background)
    result = op.result
    if result.lookup is not None and on_lookup is not None:
        on_lookup(result.lookup)
    trace.absorb_provide(result)
    if node.latency is not None:
        trace.extra["path_bound_s"] = bound.provide(op.path_to, result.walk_ended_at, result.holders)
    error = provide_error(result)
    if error is not None:
        raise RpcError(error)
    return result


async def run_crawl(node: DhtNode, crawler: Crawler) -> CrawlResult:
    """Drive a crawl: FIND_NODE requests for keys of each bucket of every peer found."""
    await _drive(crawler, _transport(node, b""), Recorder())
    return crawler.result


async def find_first_provider(node: DhtNode, key: bytes, seeds: list[PeerRef] | None = None,
                              background: trio.Nursery | None = None) -> tuple[PeerRef | None, Trace]:
    """GET_PROVIDERS walk that stops at the first provider record (TTFPR): it returns when
    the record arrives, as go's ``FindProvidersAsync`` hands it out; the walk's other
    requests are cancelled in ``background`` (if given) after that."""
    trace = Trace("retrieve")
    local = node.providers.get(key, time.time())
    if local:  # go-libp2p-kad-dht answers from its own provider store first
        trace.extra["local"] = True
        return PeerRef.from_id(local[0]), trace
    result = await run_lookup(node, key, trace, goal="providers", seeds=seeds, background=background)
    return (result.providers[0] if result.providers else None), trace


async def bootstrap(node: DhtNode, peers: list[wire.WirePeer],
                    on_lookup: Callable[[LookupResult], None] | None = None) -> int:
    """Join the DHT the honest way: dial the bootstrap peers and look up our own id
    (``on_lookup`` sees the finished lookup). Routing table size afterwards.

    The node can serve from here on; the far buckets fill later with ``refresh_buckets``
    (in the background: on a network with unreachable peers each refresh lookup waits out
    dial timeouts).
    """
    seeds = [ref for ref in map(node.learn, peers) if ref is not None]
    result = await run_lookup(node, node.me.peer_id, Trace("bootstrap"), seeds=seeds)
    if on_lookup is not None:
        on_lookup(result)
    return len(node.routing)


async def refresh_buckets(node: DhtNode, cpls: int = REFRESH_CPLS,
                          on_lookup: Callable[[LookupResult], None] | None = None) -> int:
    """Look up a random key per common-prefix length ``0..cpls-1`` (as go-libp2p-kad-dht's
    routing-table refresh does), so that far buckets fill; ``on_lookup`` sees each finished
    lookup. Routing table size afterwards."""
    trace = Trace("refresh")
    for key in refresh_keys(node.me.key, cpls):
        if not node.routing:
            break
        result = await run_lookup(node, key, trace)
        if on_lookup is not None:
            on_lookup(result)
    return len(node.routing)

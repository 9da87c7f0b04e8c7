"""Runs ``parsec.kad`` state machines over real libp2p streams.

The engine decides whom to ask and when it is done; this driver only sends what a
machine's ``poll`` asks for, feeds back replies and failures with ``trio.current_time``,
and sleeps until the next outcome or the machine's next deadline. One loop (``_drive``)
serves lookups, provide operations and crawls alike. Every operation returns a ``Trace``
(``parsec.kad.trace``, shared with the simulator) — RPCs by type, peers contacted, hops,
first/last response — stored beside each measurement so a duration can be explained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from parsec.kad import Lookup, LookupResult, PeerRef, key_of
from parsec.kad.crawl import Crawler, CrawlRequest, CrawlResult
from parsec.kad.fleets import REFRESH_CPLS, REFRESH_PERIOD, feed_estimator, refresh_keys
from parsec.kad.optprov import ProvideOperation, ProvideResult, Request
from parsec.kad.path_bound import PathBound
from parsec.kad.trace import Trace, provide_error
from parsec.net import wire
from parsec.net.node import DhtNode, RpcError

_KIND_TO_WIRE = {"find_node": wire.FIND_NODE, "get_providers": wire.GET_PROVIDERS, "add_provider": wire.ADD_PROVIDER}



Outcome = tuple[Any, Any, str]  # (request, reply or None, error text)


async def _drive(machine, send: Callable[[Any], Awaitable[Any]], apply: Callable[[Any, Any, str], None],
                 *, until: Callable[[], bool] | None = None, nursery: trio.Nursery | None = None) -> None:
    """Poll ``machine``, send its requests (each in its own task), apply outcomes.

    Returns when ``until()`` holds (default: the machine is done). Requests still in flight
    are cancelled, unless ``nursery`` is given: then the loop goes on there in the
    background until the machine is done (optimistic provide's stores that finish after
    the caller was answered).
    """
    finished = until or (lambda: machine.done)
    outcomes_in, outcomes_out = trio.open_memory_channel(math.inf)
    answered = trio.Event()

    async def one(request) -> None:
        try:
            reply = await send(request)
        except RpcError as error:
            outcomes_in.send_nowait((request, None, str(error)))
        else:
            outcomes_in.send_nowait((request, reply, ""))

    async def loop(task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as requests:
            while not machine.done:
                for request in machine.poll(trio.current_time()):
                    requests.start_soon(one, request)
                if finished():
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


def _rpc_name(kind: int) -> str:
    return wire.TYPE_NAMES.get(kind, str(kind))


def _closer(node: DhtNode, reply) -> list[PeerRef]:
    return [ref for ref in map(node.learn, wire.peers_from_wire(reply.closerPeers)) if ref is not None]


def _providers(node: DhtNode, reply) -> list[PeerRef]:
    found = []
    for provider in wire.peers_from_wire(reply.providerPeers):
        node.learn(provider)
        found.append(PeerRef.from_id(provider.peer_id))
    return found


def _request_cost(node: DhtNode, peer: PeerRef, *, reply: bool = True) -> float:
    """The latency model's least cost of a request to ``peer`` sent now: the connection
    set-up if there is no connection yet, plus a round trip if it expects an answer (an
    ADD_PROVIDER is written and done). 0 without a model."""
    model = node.latency
    if model is None:
        return 0.0
    remote = model.region_index_of(peer.peer_id)
    setup = 0.0 if node.connected(peer) else model.dial_delay(node.region, remote)
    return setup + (model.rtt(node.region, remote) if reply else 0.0)


def _counting_rpc(node: DhtNode, trace: Trace, kind: int, key: bytes, started: float, bound: PathBound):
    """``send`` for lookups: one request of ``kind`` for ``key``, counted in ``trace``."""
    async def send(peer: PeerRef):
        trace.rpcs[_rpc_name(kind)] += 1
        bound.asked(peer, _request_cost(node, peer), trio.current_time())
        reply = await node.rpc(peer, wire.request(kind, key))
        trace.mark_response(trio.current_time() - started)
        return reply

    return send


async def run_lookup(node: DhtNode, key: bytes, kind: int, trace: Trace, *, goal: str = "closest",
                     seeds: list[PeerRef] | None = None, alpha: int = 10, beta: int = 3,
                     background: trio.Nursery | None = None) -> LookupResult:
    """Drive one iterative lookup for ``key`` with request type ``kind``; with
    ``background``, the requests still in flight when it is done are cancelled there, after
    the return (their streams take milliseconds to close)."""
    target = key_of(key)
    start_seeds = seeds if seeds is not None else node.routing.closest(target, node.k)
    now = trio.current_time()
    lookup = Lookup(target, start_seeds, now=now, goal=goal, alpha=alpha, beta=beta,
                    k=node.k, rpc_timeout=node.rpc_timeout, self_peer=node.me)

    bound = PathBound()

    def apply(peer: PeerRef, reply, error: str) -> None:
        at = trio.current_time()
        if reply is None:
            lookup.on_failure(peer, at, error)
            return
        bound.answered(peer, at)
        lookup.on_response(peer, _closer(node, reply), at, providers=_providers(node, reply))
        node.routing.add(peer)  # a peer that answered is a live DHT server

    await _drive(lookup, _counting_rpc(node, trace, kind, key, now, bound), apply, nursery=background)
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
    if goal == "closest":
        _feed_estimator(node, result)
    return result


def _feed_estimator(node: DhtNode, result: LookupResult) -> None:
    """Every completed closest-peers lookup is a data point for the network-size estimate."""
    feed_estimator(node.estimator, node.routing, result, trio.current_time())


async def run_provide(node: DhtNode, op: ProvideOperation, key: bytes, trace: Trace,
                      background: trio.Nursery | None = None) -> ProvideResult:
    """Drive a provide operation until it may answer the caller; stores still pending then
    finish in ``background`` (or before returning, without it)."""
    started = trio.current_time()
    announce = wire.request(wire.ADD_PROVIDER, key, provider=node.self_wire())
    bound = PathBound()

    async def send(request: Request):
        kind = _KIND_TO_WIRE[request.kind]
        trace.rpcs[_rpc_name(kind)] += 1
        if request.kind == "add_provider":
            bound.stored(request.peer, _request_cost(node, request.peer, reply=False))
            return await node.rpc(request.peer, announce, expect_reply=False)
        bound.asked(request.peer, _request_cost(node, request.peer))
        reply = await node.rpc(request.peer, wire.request(kind, key))
        trace.mark_response(trio.current_time() - started)
        return reply

    def apply(request: Request, reply, error: str) -> None:
        at = trio.current_time()
        if request.kind == "add_provider":
            op.on_store_done(request.peer, not error, at, error)
        elif error:
            op.on_failure(request.peer, at, error)
        else:
            bound.answered(request.peer, at)
            op.on_response(request.peer, _closer(node, reply), at, providers=_providers(node, reply))
            node.routing.add(request.peer)

    node.providers.add(key, node.me.peer_id, time.time())
    await _drive(op, send, apply, until=lambda: op.returnable, nursery=background)
    result = op.result
    if result.lookup is not None:
        _feed_estimator(node, result.lookup)
    trace.absorb_provide(result)
    if node.latency is not None:
        trace.extra["path_bound_s"] = bound.provide(op.path_to, result.walk_ended_at, result.holders)
    error = provide_error(result)
    if error is not None:
        raise RpcError(error)
    return result


async def run_crawl(node: DhtNode, crawler: Crawler) -> CrawlResult:
    """Drive a crawl: FIND_NODE requests for keys of each bucket of every peer found."""
    async def send(request: CrawlRequest):
        return await node.rpc(request.peer, wire.request(wire.FIND_NODE, request.key_bytes))

    def apply(request: CrawlRequest, reply, error: str) -> None:
        at = trio.current_time()
        if reply is None:
            crawler.on_failure(request.peer, request.key_bytes, at, error)
        else:
            crawler.on_response(request.peer, request.key_bytes, _closer(node, reply), at)

    await _drive(crawler, send, apply)
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
    result = await run_lookup(node, key, wire.GET_PROVIDERS, trace, goal="providers", seeds=seeds,
                              background=background)
    return (result.providers[0] if result.providers else None), trace


async def bootstrap(node: DhtNode, peers: list[wire.WirePeer]) -> int:
    """Join the DHT the honest way: dial the bootstrap peers and look up our own id.

    Returns the routing table size afterwards. The node can serve from here on; the far
    buckets fill later with ``refresh_buckets`` (in the background: on a network with
    unreachable peers each refresh lookup waits out dial timeouts).
    """
    trace = Trace("bootstrap")
    seeds = [ref for ref in map(node.learn, peers) if ref is not None]
    await run_lookup(node, node.me.peer_id, wire.FIND_NODE, trace, seeds=seeds)
    return len(node.routing)


async def refresh_buckets(node: DhtNode, cpls: int = REFRESH_CPLS) -> int:
    """Look up a random key per common-prefix length ``0..cpls-1`` (as go-libp2p-kad-dht's
    routing-table refresh does), so that far buckets fill; routing table size afterwards."""
    trace = Trace("refresh")
    for key in refresh_keys(node.me.key, cpls):
        if not node.routing:
            break
        await run_lookup(node, key, wire.FIND_NODE, trace)
    return len(node.routing)

"""Runs ``parsec.kad`` machines over the simulated network — the twin of ``parsec.net.driver``.

Same machines, same events, same accounting: each request a machine's ``poll`` hands out
goes to ``SimNetwork.send`` instead of a libp2p stream, and its outcome comes back stamped
with the virtual time. As in the libp2p driver, a peer that answered joins the requester's
routing table, a failed dial leaves it, every completed closest-peers lookup feeds the
network-size estimator (``parsec.kad.fleets.feed_estimator``), and every operation fills a
``parsec.kad.trace.Trace`` the same way.
"""

from __future__ import annotations

from parsec.kad import Lookup, PeerRef
from parsec.kad.crawl import Crawler, CrawlRequest
from parsec.kad.fleets import ALPHA, BETA, feed_estimator
from parsec.kad.estimator import NetworkSizeEstimator
from parsec.kad.keyspace import key_of
from parsec.kad.optprov import ProvideOperation, Request
from parsec.kad.path_bound import PathBound
from parsec.kad.trace import RPC_NAMES, Trace
from parsec.sim.engine import MachineRun
from parsec.sim.network import Endpoint, Outcome, SimNetwork

FIND_NODE, GET_PROVIDERS = "find_node", "get_providers"


def start_lookup(network: SimNetwork, client: Endpoint, target: int, trace: Trace, *, seeds: list[PeerRef],
                 goal: str = "closest", rpc_timeout: float = 10.0,
                 estimator: NetworkSizeEstimator | None = None,
                 bound: PathBound | None = None) -> tuple[Lookup, MachineRun]:
    """One iterative lookup of ``target`` from ``seeds`` (``run_lookup`` of the libp2p
    driver); ``run.finished`` resolves when it is done. A completed closest-peers lookup
    feeds ``estimator`` (when given) as soon as it ends; ``bound`` records request costs
    and answer times, as the libp2p driver does."""
    loop = network.loop
    started = loop.now
    routing = client.routing
    lookup = Lookup(target, seeds, now=started, goal=goal, alpha=ALPHA, beta=BETA, k=network.transport.k,
                    rpc_timeout=rpc_timeout, self_peer=client.me)  # fmt: skip
    kind = GET_PROVIDERS if goal == "providers" else FIND_NODE
    name = RPC_NAMES[kind]

    def apply(peer: PeerRef, outcome: Outcome) -> None:
        closer, providers, error = outcome
        now = loop.now
        if error:
            lookup.on_failure(peer, now, error)
            return
        trace.mark_response(now - started)
        if bound is not None:
            bound.answered(peer, now)
        lookup.on_response(peer, closer, now, providers)
        if routing is not None:
            routing.add(peer)  # a peer that answered is a live DHT server

    def send(peer: PeerRef, run: MachineRun) -> None:
        trace.rpcs[name] += 1
        if bound is not None:
            bound.asked(peer, network.request_cost(client, peer), loop.now)
        network.send(client, peer, kind, target, lambda outcome: run.deliver(apply, peer, outcome))

    run = MachineRun(loop, lookup, send)
    if goal == "closest" and estimator is not None and routing is not None:
        run.finished.then(lambda _: feed_estimator(estimator, routing, lookup.result, loop.now))
    return lookup, run


def start_provide(network: SimNetwork, client: Endpoint, op: ProvideOperation, trace: Trace) -> MachineRun:
    """A provide operation (``run_provide`` of the libp2p driver): ``run.answered``
    resolves once the caller may be answered, the stores still pending go on until
    ``run.finished``."""
    loop = network.loop
    started = loop.now
    routing = client.routing

    def apply(request: Request, outcome: Outcome) -> None:
        closer, providers, error = outcome
        now = loop.now
        if request.kind == "add_provider":
            op.on_store_done(request.peer, not error, now, error)
        elif error:
            op.on_failure(request.peer, now, error)
        else:
            trace.mark_response(now - started)
            op.on_response(request.peer, closer, now, providers)
            if routing is not None:
                routing.add(request.peer)

    def send(request: Request, run: MachineRun) -> None:
        trace.rpcs[RPC_NAMES[request.kind]] += 1
        network.send(client, request.peer, request.kind, op.key, lambda outcome: run.deliver(apply, request, outcome),
                     provider=client.me)

    return MachineRun(loop, op, send, until=lambda: op.returnable)


def start_crawl(network: SimNetwork, client: Endpoint, crawler: Crawler) -> MachineRun:
    """A crawl (``run_crawl`` of the libp2p driver): FIND_NODE for each requested key."""
    loop = network.loop

    def apply(request: CrawlRequest, outcome: Outcome) -> None:
        closer, _, error = outcome
        if error:
            crawler.on_failure(request.peer, request.key_bytes, loop.now, error)
        else:
            crawler.on_response(request.peer, request.key_bytes, closer, loop.now)

    def send(request: CrawlRequest, run: MachineRun) -> None:
        network.send(client, request.peer, FIND_NODE, key_of(request.key_bytes),
                     lambda outcome: run.deliver(apply, request, outcome))

    return MachineRun(loop, crawler, send)


def path_rtt(network: SimNetwork, client: Endpoint, lookup: Lookup) -> float:
    """The round trips along the chain of peers that led to the first provider record: no
    walk gets there sooner (the libp2p driver's ``path_rtt_s``)."""
    index_of = network.population.index_of
    return sum(network.base_rtt(client, index_of[peer]) for peer in lookup.provider_path())


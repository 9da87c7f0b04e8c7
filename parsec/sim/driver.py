"""Runs ``parsec.kad`` machines over the simulated network — the twin of ``parsec.net.driver``.

Same machines, same events, same accounting: ``run`` hands each request a machine's ``poll``
gives out to ``SimNetwork.send`` instead of a libp2p stream (one transport function), and
its outcome comes back stamped with the virtual time through ``MachineRun``, the one loop.
As in the libp2p driver, a ``Recorder`` counts the requests in the operation's ``Trace``,
times the answers, keeps the path bound and puts a peer that answered into the requester's
routing table; a failed dial leaves it (``SimNetwork``).
"""

from __future__ import annotations

from parsec.kad import Key, Lookup, PeerRef, key_of
from parsec.kad.constants import RPC_TIMEOUT
from parsec.kad.lookup_types import Goal
from parsec.kad.machine import Machine, Request
from parsec.kad.path_bound import PathBound
from parsec.kad.trace import Recorder, Trace
from parsec.sim.engine import MachineRun
from parsec.sim.network import Endpoint, SimNetwork


def run(network: SimNetwork, client: Endpoint, machine: Machine, key: Key | None,
        recorder: Recorder | None = None) -> MachineRun:
    """Start ``machine`` as ``client`` on the simulated wire; a request without key bytes of
    its own is for ``key``. ``run.answered`` resolves once it may answer its caller,
    ``run.finished`` once it is done."""
    provider = client.me

    def transport(request: Request, machine_run: MachineRun) -> None:
        target = key if request.key is None else key_of(request.key)
        assert target is not None, "a request without key bytes needs the operation's key"
        network.send(client, request.peer, request.kind, target,
                     lambda outcome: machine_run.deliver(request, outcome), provider=provider)

    return MachineRun(network.loop, machine, transport, recorder)


def recorder(network: SimNetwork, client: Endpoint, trace: Trace, *, bound: PathBound | None = None) -> Recorder:
    """What ``client``'s operation notes from now on: requests in ``trace``, costs in
    ``bound`` (when given), answering peers into its routing table."""
    cost = None if bound is None else (lambda peer, _reply: network.request_cost(client, peer))
    return Recorder(trace, network.loop.now, bound=bound, cost=cost, routing=client.routing)


def start_lookup(network: SimNetwork, client: Endpoint, target: Key, trace: Trace, *, seeds: list[PeerRef],
                 goal: Goal = "closest", rpc_timeout: float = RPC_TIMEOUT,
                 bound: PathBound | None = None) -> tuple[Lookup, MachineRun]:
    """One iterative lookup of ``target`` from ``seeds`` (``run_lookup`` of the libp2p
    driver); ``run.finished`` resolves when it is done."""
    lookup = Lookup(target, seeds, now=network.loop.now, goal=goal, k=network.transport.k,
                    rpc_timeout=rpc_timeout, self_peer=client.me)
    return lookup, run(network, client, lookup, target, recorder(network, client, trace, bound=bound))


def path_rtt(network: SimNetwork, client: Endpoint, lookup: Lookup) -> float:
    """The round trips along the chain of peers that led to the first provider record: no
    walk gets there sooner (the libp2p driver's ``path_rtt_s``)."""
    index_of = network.population.index_of
    return sum(network.base_rtt(client, index_of[peer]) for peer in lookup.provider_path())

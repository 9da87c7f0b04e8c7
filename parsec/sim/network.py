"""What a message costs and what it brings back: the simulated wire between peers.

The libp2p driver's transport facts, with the virtual clock (``parsec.net.node`` for the
testbed's version of each):

- A request to a peer we hold no connection to first dials: ``dial_rtts`` round trips
  (the latency model's: 1 for QUIC in the simulator's defaults, 2 for TCP + Noise in the
  testbed's), then one round trip for request and answer. A connection unused for
  ``connection_idle`` seconds is gone.
- An **unreachable** id never answers the dial: the request fails after ``dial_timeout``
  (``SimSettings``: 15 s, go-libp2p's for public addresses), as dials to the testbed's
  black holes do — except the share ``refused`` of them (drawn once per id), whose dial
  fails after one round trip (a host that is up with the port closed resets it).
- A peer that **left** (churn) refuses the dial: failure after one round trip.
- A failed dial removes the peer from the requester's routing table (go-libp2p-kad-dht does;
  so does ``DhtNode._dial``), and puts the peer in **dial backoff** as go-libp2p's swarm does
  (``backoff_base`` + 1 s × failures², at most 5 min): a dial during the backoff fails at
  once. That is why go's classic provide does not wait a second dial timeout for an
  unreachable peer that its lookup's followup already tried. ``backoff_base`` 0 turns it
  off (py-libp2p, under the testbed, has no dial backoff).
- An **unresponsive** peer (share ``unresponsive`` of the reachable ones; off by default:
  there is no published figure) accepts the connection and never answers a request, which
  then fails ``read_timeout`` after it was written (go-libp2p-kad-dht's 10 s read timeout;
  ``None``: never, the requester's own RPC timeout settles it); ADD_PROVIDERs to it are
  written (and stored) all the same.
- ADD_PROVIDER has no answer: it succeeds once written (after the dial, if one was needed)
  and the record is at the holder one one-way delay later.
- Round trip between two peers: the region matrix's RTT (each direction with the
  per-message jitter of ``LatencyModel.one_way``) plus both peers' extra access round trip.
- Answers are computed when the request is sent, from the responder's (static) table and
  the records it holds by the time the request reaches it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from parsec.kad import DELIVERED, Failure, Key, Outcome, PeerRef, Reply, RoutingTable
from parsec.model.latency import LatencyModel
from parsec.sim.engine import EventLoop
from parsec.sim.population import Population

_REFUSED = Failure("dial failed: connection refused")
_BACKOFF = Failure("dial backoff")
_SILENCE = Failure("no answer")  # never delivered: the machine's own timeout settles it
BACKOFF_COEF = 1.0  # go-libp2p swarm BackoffCoef
BACKOFF_MAX = 300.0  # go-libp2p swarm BackoffMax


@dataclass(slots=True)
class Endpoint:
    """A peer that sends requests: where it is, its connections, and (for the measured
    servers) the routing table that learns from answers and forgets failed dials."""

    me: PeerRef
    region: int
    access: float = 0.0
    routing: RoutingTable | None = None
    connections: dict[int, float] = field(default_factory=dict)  # peer index → open until
    backoff: dict[int, tuple[int, float]] = field(default_factory=dict)  # peer index → (failed dials, until)


@dataclass(frozen=True, slots=True)
class Transport:
    """The parameters of the simulated wire (see the module docstring)."""

    dial_timeout: float = 5.0
    connection_idle: float = 30.0
    k: int = 20
    backoff_base: float = 5.0
    read_timeout: float | None = None

    def backoff(self, failures: int) -> float:
        """go-libp2p's swarm: BackoffBase + BackoffCoef × failures², at most BackoffMax."""
        return min(self.backoff_base + BACKOFF_COEF * failures * failures, BACKOFF_MAX)


class SimNetwork:
    """Computes each request's outcome and schedules its arrival on the loop."""

    def __init__(self, loop: EventLoop, population: Population, latency: LatencyModel, transport: Transport,
                 rng: random.Random, *, unresponsive: float = 0.0, refused: float = 0.0) -> None:
        self.loop = loop
        self.population = population
        self.latency = latency
        self.transport = transport
        self.rng = rng
        self.silent = bytearray(len(population))  # 1: accepts connections, answers nothing
        reachable = population.reachable_indices
        for index in random.Random(rng.random()).sample(reachable, round(unresponsive * len(reachable))):
            self.silent[index] = 1
        self.refuses = bytearray(len(population))  # 1: an unreachable id whose dial is refused at once
        ghosts = [i for i in range(len(population)) if not population.reachable[i]]
        for index in random.Random(rng.random()).sample(ghosts, round(refused * len(ghosts))):
            self.refuses[index] = 1
        # holder index → key → provider → when the record reached the holder
        self.records: dict[int, dict[Key, dict[PeerRef, float]]] = {}
        self.rpcs = 0
        self._dial_timeout_error = Failure(f"dial timeout after {transport.dial_timeout:g}s")

    # ------------------------------------------------------------- latency

    def base_rtt(self, client: Endpoint, peer: int) -> float:
        """The round trip between ``client`` and population peer ``peer`` without jitter."""
        population = self.population
        return self.latency.rtt(client.region, population.region[peer]) + client.access + population.access[peer]

    def request_cost(self, client: Endpoint, peer: PeerRef) -> float:
        """The least time a request to ``peer`` sent now takes, jitter aside: a round trip,
        plus the dial's round trips without an open connection (``PathBound``'s cost)."""
        index = self.population.index_of.get(peer)
        if index is None:
            return 0.0
        rtt = self.base_rtt(client, index)
        connected = client.connections.get(index, -1.0) >= self.loop.now
        return rtt if connected else rtt * (1 + self.latency.dial_rtts)

    def _round_trip(self, client: Endpoint, peer: int) -> tuple[float, float]:
        """(request one-way, answer one-way) with jitter, access delays split evenly."""
        model, population = self.latency, self.population
        a, b = client.region, population.region[peer]
        access = (client.access + population.access[peer]) / 2
        return model.one_way(a, b, self.rng) + access, model.one_way(b, a, self.rng) + access

    # ------------------------------------------------------------- requests

    def send(self, client: Endpoint, peer: PeerRef, kind: str, target: Key,
             deliver: Callable[[Outcome], None], *, provider: PeerRef | None = None) -> None:
        """Send one request (``find_node``, ``get_providers`` or ``add_provider`` of
        ``provider``'s record for ``target``); ``deliver(outcome)`` runs when it settles."""
        self.rpcs += 1
        delay, outcome = self._exchange(client, peer, kind, target, provider)
        if outcome is not _SILENCE:  # silence: the machine's own timeout settles it
            self.loop.at(self.loop.now + delay, deliver, outcome)

    def _exchange(self, client: Endpoint, peer: PeerRef, kind: str, target: Key,
                  provider: PeerRef | None) -> tuple[float, Outcome]:
        population, transport, now = self.population, self.transport, self.loop.now
        index = population.index_of.get(peer)
        if index is None:
            raise ValueError(f"{peer!r} is not a peer of the simulated network")
        connected = client.connections.get(index, -1.0) >= now
        if not connected and transport.backoff_base > 0:
            failures, until = client.backoff.get(index, (0, -1.0))
            if until > now:
                return 0.0, _BACKOFF
        if not population.reachable[index] and not self.refuses[index]:
            self._dial_failed(client, peer, index, now + transport.dial_timeout)
            return transport.dial_timeout, self._dial_timeout_error
        there, back = self._round_trip(client, index)
        if not population.online[index]:  # left (churn), or an unreachable id that refuses
            client.connections.pop(index, None)
            self._dial_failed(client, peer, index, now + there + back)
            return there + back, _REFUSED
        dial = 0.0 if connected else self.latency.dial_rtts * (there + back)
        if kind == "add_provider":
            arrives = now + dial + there
            self.records.setdefault(index, {}).setdefault(target, {}).setdefault(provider or client.me, arrives)
            client.connections[index] = now + dial + transport.connection_idle
            return dial, DELIVERED
        arrives = now + dial + there
        if self.silent[index]:
            client.connections[index] = now + dial + transport.connection_idle
            if transport.read_timeout is None:
                return 0.0, _SILENCE
            return dial + transport.read_timeout, Failure(f"no answer within {transport.read_timeout:g}s")
        closer = population.closest(index, target, transport.k, exclude=client.me.key)
        providers: list[PeerRef] = []
        if kind == "get_providers":
            held = self.records.get(index, {}).get(target)
            if held:
                providers = [p for p, at in held.items() if at <= arrives]
        done = arrives + back
        client.connections[index] = done + transport.connection_idle
        return done - now, Reply(closer, providers)

    def _dial_failed(self, client: Endpoint, peer: PeerRef, index: int, at: float) -> None:
        """The dial to ``peer`` fails at ``at``: out of the routing table, into backoff."""
        if client.routing is not None:
            client.routing.remove(peer)
        if self.transport.backoff_base > 0:
            failures = client.backoff.get(index, (0, 0.0))[0] + 1
            client.backoff[index] = (failures, at + self.transport.backoff(failures))

    def holders(self, target: Key) -> list[PeerRef]:
        """Every peer that holds a record for ``target`` (for checks and reports)."""
        refs = self.population.refs
        return [refs[i] for i, held in self.records.items() if target in held]

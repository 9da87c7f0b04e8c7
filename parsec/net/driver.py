"""Runs ``parsec.kad`` lookups over real libp2p streams, and the operations built on them.

The engine decides whom to ask and when it is done; this driver only sends the RPCs it
asks for (at most α at a time), feeds back replies and failures with ``trio.current_time``,
and sleeps until the next reply or the engine's next deadline. Every operation returns a
``Trace``: RPCs by type, peers contacted, hops, first/last response — stored beside each
measurement so a duration can be explained.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import trio

from parsec.kad import Lookup, LookupResult, PeerRef, key_of
from parsec.net import wire
from parsec.net.node import DhtNode, RpcError


@dataclass
class Trace:
    """What one DHT operation did on the wire."""

    operation: str
    rpcs: Counter = field(default_factory=Counter)
    failures: int = 0
    peers_contacted: int = 0
    hops: int = 0
    first_response_s: float | None = None
    last_response_s: float | None = None
    holders: list[str] = field(default_factory=list)

    def absorb(self, result: LookupResult) -> None:
        self.peers_contacted += result.peers_contacted
        self.hops = max(self.hops, result.hops)
        self.failures += result.failures + result.timeouts
        for mark, name in ((result.first_response_at, "first_response_s"), (result.last_response_at, "last_response_s")):
            if mark is not None:
                value = mark - result.started_at
                current = getattr(self, name)
                if current is None or (name == "first_response_s" and value < current) or (
                    name == "last_response_s" and value > current
                ):
                    setattr(self, name, value)

    def as_dict(self) -> dict:
        return {
            "operation": self.operation,
            "rpcs": {wire.TYPE_NAMES.get(kind, str(kind)): n for kind, n in self.rpcs.items()},
            "rpc_total": sum(self.rpcs.values()),
            "failures": self.failures,
            "peers_contacted": self.peers_contacted,
            "hops": self.hops,
            "first_response_s": self.first_response_s,
            "last_response_s": self.last_response_s,
            "holders": len(self.holders),
        }


async def run_lookup(node: DhtNode, key: bytes, kind: int, trace: Trace, *, goal: str = "closest",
                     seeds: list[PeerRef] | None = None, alpha: int = 10, beta: int = 3) -> LookupResult:
    """Drive one iterative lookup for ``key`` with request type ``kind``."""
    target = key_of(key)
    start_seeds = seeds if seeds is not None else node.routing.closest(target, node.k)
    lookup = Lookup(target, start_seeds, now=trio.current_time(), goal=goal, alpha=alpha, beta=beta,
                    k=node.k, rpc_timeout=node.rpc_timeout, self_peer=node.me)
    replies_in, replies_out = trio.open_memory_channel(math.inf)

    async def ask(peer: PeerRef) -> None:
        trace.rpcs[kind] += 1
        try:
            reply = await node.rpc(peer, wire.request(kind, key))
        except RpcError as error:
            replies_in.send_nowait((peer, None, str(error)))
        else:
            replies_in.send_nowait((peer, reply, ""))

    async with trio.open_nursery() as nursery:
        while not lookup.done:
            for peer in lookup.poll(trio.current_time()):
                nursery.start_soon(ask, peer)
            if lookup.done:
                break
            deadline = lookup.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                peer, reply, error = await replies_out.receive()
                _apply(node, lookup, peer, reply, error)
                while True:  # apply everything that already arrived before asking again
                    try:
                        peer, reply, error = replies_out.receive_nowait()
                    except trio.WouldBlock:
                        break
                    _apply(node, lookup, peer, reply, error)
        nursery.cancel_scope.cancel()  # a finished lookup abandons its stragglers
    result = lookup.result
    trace.absorb(result)
    return result


def _apply(node: DhtNode, lookup: Lookup, peer: PeerRef, reply, error: str) -> None:
    now = trio.current_time()
    if reply is None:
        lookup.on_failure(peer, now, error)
        return
    closer = [ref for ref in map(node.learn, wire.peers_from_wire(reply.closerPeers)) if ref is not None]
    providers = []
    for provider in wire.peers_from_wire(reply.providerPeers):
        node.learn(provider)
        providers.append(PeerRef.from_id(provider.peer_id))
    lookup.on_response(peer, closer, now, providers=providers)
    node.routing.add(peer)  # a peer that answered is a live DHT server


async def find_first_provider(node: DhtNode, key: bytes) -> tuple[PeerRef | None, Trace]:
    """GET_PROVIDERS walk that stops at the first provider record (TTFPR)."""
    trace = Trace("retrieve")
    local = node.providers.get(key, time.time())
    if local:  # go-libp2p-kad-dht answers from its own provider store first
        return PeerRef.from_id(local[0]), trace
    result = await run_lookup(node, key, wire.GET_PROVIDERS, trace, goal="providers")
    return (result.providers[0] if result.providers else None), trace


async def find_closest(node: DhtNode, key: bytes, trace: Trace | None = None) -> list[PeerRef]:
    """FIND_NODE lookup of the k closest peers to ``key``."""
    result = await run_lookup(node, key, wire.FIND_NODE, trace or Trace("find_closest"))
    return result.closest


async def add_provider_to(node: DhtNode, holders: list[PeerRef], key: bytes, trace: Trace) -> int:
    """Send ADD_PROVIDER to every holder in parallel; waits for all sends; returns successes."""
    message = wire.request(wire.ADD_PROVIDER, key, provider=node.self_wire())
    sent: list[PeerRef] = []

    async def send(peer: PeerRef) -> None:
        trace.rpcs[wire.ADD_PROVIDER] += 1
        try:
            await node.rpc(peer, message, expect_reply=False)
        except RpcError:
            trace.failures += 1
        else:
            sent.append(peer)

    async with trio.open_nursery() as nursery:
        for peer in holders:
            nursery.start_soon(send, peer)
    trace.holders = [peer.peer_id.hex() for peer in sent]
    return len(sent)


async def classic_provide(node: DhtNode, key: bytes) -> Trace:
    """Lookup of the k closest, then ADD_PROVIDER to all of them (go's default provide)."""
    trace = Trace("provide")
    node.providers.add(key, node.me.peer_id, time.time())
    closest = await find_closest(node, key, trace)
    if not closest:
        raise RpcError("lookup found no peers to store the record on")
    if await add_provider_to(node, closest[: node.k], key, trace) == 0:
        raise RpcError("every ADD_PROVIDER failed")
    return trace


async def bootstrap(node: DhtNode, peers: list[wire.WirePeer], *, refresh_cpls: int = 12) -> int:
    """Join the DHT the honest way: dial the bootstrap peers, self-lookup, refresh buckets.

    Returns the routing table size afterwards. Bucket refresh looks up a random key per
    common-prefix length (as go-libp2p-kad-dht does), so far buckets fill too.
    """
    trace = Trace("bootstrap")
    seeds = [ref for ref in map(node.learn, peers) if ref is not None]
    await run_lookup(node, node.me.peer_id, wire.FIND_NODE, trace, seeds=seeds)
    rng = random.Random(node.me.key)
    for cpl in range(refresh_cpls):
        if not node.routing:
            break
        await run_lookup(node, _key_with_cpl(node.me.peer_id, cpl, rng), wire.FIND_NODE, trace)
    return len(node.routing)


def _key_with_cpl(own: bytes, cpl: int, rng: random.Random) -> bytes:
    """Some bytes whose sha256 shares exactly ``cpl`` leading bits with sha256(own).

    A lookup target for refreshing bucket ``cpl``; found by rejection sampling, which
    needs about 2**(cpl+1) hashes: cheap for the buckets a real network fills.
    """
    from parsec.kad import common_prefix_len

    mine = key_of(own)
    while True:
        candidate = rng.randbytes(32)
        if common_prefix_len(key_of(candidate), mine) == cpl:
            return candidate

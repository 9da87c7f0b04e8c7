"""A DHT peer on a py-libp2p host: the server side of kad-dht and the client RPCs.

The server side is ours rather than py-libp2p's ``KadDHT`` because parsec needs standard
k-buckets (py-libp2p splits every full bucket, so its lookups take ≈1 hop), no silent
ADD_PROVIDER rate limit, no cap of 12 concurrent inbound streams and no per-RPC error
logging (design.md, pitfalls 4, 6, 7, 9). The wire is the spec's, so go, js and py peers
talk to it unchanged.

Lookups are not here: ``parsec.net.driver`` runs a ``parsec.kad.Lookup`` over the
``rpc`` method of this class.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID

from parsec.kad import PeerRef, RoutingTable, key_of
from parsec.kad.constants import K, RPC_TIMEOUT
from parsec.model.latency import LatencyModel
from parsec.net import pylibp2p, wire
from parsec.net.wire import Message, WirePeer

log = logging.getLogger("parsec.net.node")

PROVIDER_RECORD_TTL = 48 * 3600.0  # go-libp2p-kad-dht's provider record validity
IDENTIFY_WAIT = 10.0  # how long an inbound peer's admission waits for identify
IDENTIFY_POLL = 0.25
MAX_IDENTIFY_WAITS = 1024  # peers whose admission may wait at once


@dataclass
class ProviderStore:
    """Provider records by multihash key: ``{key: {peer_id: expires_at}}`` (wall clock)."""

    ttl: float = PROVIDER_RECORD_TTL
    records: dict[bytes, dict[bytes, float]] = field(default_factory=dict)

    def add(self, key: bytes, peer_id: bytes, now: float) -> None:
        self.records.setdefault(key, {})[peer_id] = now + self.ttl

    def get(self, key: bytes, now: float) -> list[bytes]:
        holders = self.records.get(key)
        if not holders:
            return []
        live = {peer: exp for peer, exp in holders.items() if exp > now}
        if len(live) != len(holders):
            self.records[key] = live
        return list(live)

    def remove(self, key: bytes) -> None:
        self.records.pop(key, None)

    def __len__(self) -> int:
        return sum(len(holders) for holders in self.records.values())


class RpcError(Exception):
    """A request that did not get an answer: dial failure, reset, timeout, bad reply."""


class _Channel:
    """A stream to a peer with its reader (which may hold bytes read ahead)."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.reader = wire.MessageReader(stream)
        self.reused = False

    async def exchange(self, request: Message, expect_reply: bool) -> Message | None:
        await self.stream.write(wire.frame(request))
        if not expect_reply:
            return None
        reply = await self.reader.read()
        if reply is None:
            raise RpcError("stream closed without a reply")
        return reply

    async def close(self) -> None:
        try:
            await self.stream.close()
        except Exception:
            pass


class _StreamPool:
    """Idle streams by peer, each ready for its next request (at most ``per_peer`` kept)."""

    def __init__(self, per_peer: int = 2) -> None:
        self.per_peer = per_peer
        self._idle: dict[ID, list[_Channel]] = {}

    def take(self, pid: ID) -> _Channel | None:
        idle = self._idle.get(pid)
        if not idle:
            return None
        channel = idle.pop()
        if not idle:
            del self._idle[pid]
        channel.reused = True
        return channel

    def keep(self, pid: ID, channel: _Channel) -> None:
        idle = self._idle.setdefault(pid, [])
        if len(idle) < self.per_peer:
            idle.append(channel)
        # else: dropped; the remote ends its handler when the connection goes

    async def drop(self, pid: ID) -> None:
        for channel in self._idle.pop(pid, []):
            await channel.close()


class DhtNode:
    """One kad-dht server peer: routing table, provider store, inbound handler, RPCs."""

    def __init__(
        self,
        host: IHost,
        *,
        protocol_id: str = "/ipfs/kad/1.0.0",
        k: int = K,
        rpc_timeout: float = RPC_TIMEOUT,
        add_inbound_peers: bool = True,
        latency: LatencyModel | None = None,
        dial_timeout: float = 5.0,
        answer_delay: float = 0.0,
    ) -> None:
        self.host = host
        self.peer_id: ID = host.get_id()
        self.me = PeerRef.from_id(self.peer_id.to_bytes())
        self.protocol_id = protocol_id
        self.k = k
        self.rpc_timeout = rpc_timeout
        self.routing = RoutingTable(self.me, k=k)
        self.providers = ProviderStore()
        self.add_inbound_peers = add_inbound_peers
        self.latency = latency
        self.dial_timeout = dial_timeout  # go-libp2p's: a dial to an unreachable peer costs this
        self.answer_delay = answer_delay  # testbed "slow peer": extra time before every answer
        self.region = latency.region_index_of(self.me.peer_id) if latency else None
        self._rng = random.Random(self.me.key)
        self._ids: dict[bytes, ID] = {}
        self._streams = _StreamPool()
        self._identify_waits: set[ID] = set()
        self.inbound_requests = 0

    # -- identity and address book -------------------------------------------------

    def start(self) -> None:
        """Register the protocol (before any connection: design.md) and serve it."""
        self.host.set_stream_handler(self.protocol_id, self._handle_stream)

    def id_of(self, peer_id: bytes) -> ID:
        found = self._ids.get(peer_id)
        if found is None:
            found = self._ids[peer_id] = ID(peer_id)
        return found

    def addrs(self) -> list[multiaddr.Multiaddr]:
        return pylibp2p.listen_addrs(self.host)

    def self_wire(self) -> WirePeer:
        return WirePeer.of(self.peer_id, self.addrs())

    def learn(self, peer: WirePeer) -> PeerRef | None:
        """Remember a peer's addresses; its PeerRef, or None for ourselves/garbage."""
        if peer.peer_id == self.me.peer_id:
            return None
        try:
            pid = self.id_of(peer.peer_id)
        except Exception:
            return None
        pylibp2p.remember(self.host, pid, peer.multiaddrs())
        return PeerRef.from_id(peer.peer_id)

    def wire_peer(self, ref: PeerRef) -> WirePeer:
        """A peer as the wire carries it, with the addresses we know; ourselves with our
        listen addresses (as go's GET_PROVIDERS answer does for its own provider entry: a
        client can then dial the provider without a FIND_PEER)."""
        pid = self.id_of(ref.peer_id)
        if ref.peer_id == self.me.peer_id:
            return WirePeer.of(pid, pylibp2p.listen_addrs(self.host))
        return WirePeer.of(pid, pylibp2p.known_addrs(self.host, pid))

    def add_to_routing(self, peers: Iterable[WirePeer]) -> int:
        added = 0
        for peer in peers:
            ref = self.learn(peer)
            if ref is not None and self.routing.add(ref):
                added += 1
        return added

    async def forget(self, peer_id: bytes) -> None:
        """Close connections to a peer and drop its addresses (unless it is in our table)."""
        pid = self.id_of(peer_id)
        await self._streams.drop(pid)
        try:
            await self.host.disconnect(pid)
        except Exception:
            pass
        if PeerRef.from_id(peer_id) not in self.routing:
            pylibp2p.forget(self.host, pid)

    # -- server side ---------------------------------------------------------------

    def closer_peers(self, key: bytes, exclude: bytes | None = None) -> list[WirePeer]:
        target = key_of(key)
        peers = [ref for ref in self.routing.closest(target, self.k + 1) if ref.peer_id != exclude]
        return [self.wire_peer(ref) for ref in peers[: self.k]]

    def answer(self, request: Message, sender: bytes) -> Message | None:
        """The response to one request (pure apart from the tables); None: no reply."""
        kind = request.type
        now = time.time()
        if kind == wire.ADD_PROVIDER:
            for provider in wire.peers_from_wire(request.providerPeers):
                if provider.peer_id == sender:  # go: only the sender may announce itself
                    self.learn(provider)
                    self.providers.add(bytes(request.key), provider.peer_id, now)
            return None
        response = Message(type=kind, key=request.key, clusterLevelRaw=request.clusterLevelRaw)
        if kind == wire.PING:
            return response
        if kind == wire.PUT_VALUE:
            response.record.CopyFrom(request.record)
            return response
        if kind == wire.GET_PROVIDERS:
            holders = self.providers.get(bytes(request.key), now)
            wire.peers_to_wire(response.providerPeers, (self.wire_peer(PeerRef.from_id(p)) for p in holders))
        wire.peers_to_wire(response.closerPeers, self.closer_peers(bytes(request.key), exclude=sender))
        return response

    async def _handle_stream(self, stream) -> None:
        sender = stream.muxed_conn.peer_id
        sender_bytes = sender.to_bytes()
        reader = wire.MessageReader(stream)
        try:
            while True:
                request = await reader.read()
                if request is None:
                    break
                self.inbound_requests += 1
                response = self.answer(request, sender_bytes)
                if response is not None:
                    if self.answer_delay:
                        await trio.sleep(self.answer_delay)
                    if not await self._delay_message(sender_bytes):
                        continue  # the emulated network lost the answer
                    await stream.write(wire.frame(response))
                if self.add_inbound_peers:
                    self._admit(sender)
        except Exception as error:  # resets, garbage: the stream is done, the node is not
            log.debug("inbound stream from %s ended: %s", sender, error)
        finally:
            try:
                await stream.close()
            except Exception:
                pass

    def _admit(self, sender: ID) -> None:
        """go's rule for a peer that sent us a request: it joins our table only when
        identify says it serves our kad protocol (a DHT client — a Go parsec server
        without ``--server-mode`` — asks but never answers) and we know how to reach it.
        While identify is still running, the decision waits for it (at most
        ``IDENTIFY_WAIT`` seconds, one wait per peer)."""
        if PeerRef.from_id(sender.to_bytes()) in self.routing or self._admit_if_identified(sender):
            return
        if sender not in self._identify_waits and len(self._identify_waits) < MAX_IDENTIFY_WAITS:
            self._identify_waits.add(sender)
            trio.lowlevel.spawn_system_task(self._admit_after_identify, sender)

    def _admit_if_identified(self, sender: ID) -> bool:
        """The decision, once identify has answered (True: decided); False before."""
        serves = pylibp2p.serves_protocol(self.host, sender, self.protocol_id)
        if serves is None:
            return False
        if serves and pylibp2p.known_addrs(self.host, sender):
            self.routing.add(PeerRef.from_id(sender.to_bytes()))
        return True

    async def _admit_after_identify(self, sender: ID) -> None:
        try:
            deadline = trio.current_time() + IDENTIFY_WAIT
            while trio.current_time() < deadline:
                await trio.sleep(IDENTIFY_POLL)
                if self._admit_if_identified(sender):
                    return
        except Exception as error:  # a system task must never raise
            log.debug("admission of %s: %s", sender, error)
        finally:
            self._identify_waits.discard(sender)

    # -- client side ---------------------------------------------------------------

    async def _dial(self, pid: ID, peer: PeerRef):
        """A new connection (and the stream on it) within the dial timeout.

        A peer that cannot be dialled leaves our routing table, as go-libp2p-kad-dht
        removes peers whose dial fails during a query: tables heal from unreachable entries.
        """
        if self.latency is not None:
            await trio.sleep(self.latency.dial_delay(self.region, self.latency.region_index_of(peer.peer_id)))
        try:
            with trio.fail_after(self.dial_timeout):
                return await self.host.new_stream(pid, [self.protocol_id])
        except trio.TooSlowError:
            self.routing.remove(peer)
            raise RpcError(f"dial timeout after {self.dial_timeout:g}s") from None
        except Exception as error:
            self.routing.remove(peer)
            raise RpcError(f"dial failed: {type(error).__name__}: {error}") from None

    async def _delay_message(self, remote: bytes, wait: bool = True) -> bool:
        """Emulated WAN: wait the one-way delay to ``remote``'s region; False if lost."""
        model = self.latency
        if model is None:
            return True
        region = model.region_index_of(remote)
        if model.dropped(self._rng, self.region, region):
            return False
        if wait:
            await trio.sleep(model.one_way(self.region, region, self._rng))
        return True

    def connected(self, peer: PeerRef) -> bool:
        """Whether a connection to ``peer`` is open (a request now needs no dial)."""
        return bool(self.host.get_network().connections.get(self.id_of(peer.peer_id)))

    async def rpc(self, peer: PeerRef, request: Message, *, expect_reply: bool = True,
                  timeout: float | None = None) -> Message | None:
        """One request to ``peer``; RpcError on any failure.

        As go-libp2p-kad-dht's message sender, a stream is kept per peer and reused for the
        next request once an exchange completed (a new stream costs a multistream
        negotiation); a kept stream that turns out dead is replaced once by a fresh one.
        A stream whose exchange did not complete is closed, never reused."""
        pid = self.id_of(peer.peer_id)
        limit = self.rpc_timeout if timeout is None else timeout
        channel: _Channel | None = None
        try:
            with trio.fail_after(limit):
                channel = self._streams.take(pid)
                if channel is None:
                    channel = await self._open(pid, peer)
                # a request waits its one-way delay; a message without reply (ADD_PROVIDER)
                # costs the sender nothing, as a socket write on a real link (and as the Go
                # testbed peers do): it is only subject to loss
                if not await self._delay_message(peer.peer_id, wait=expect_reply):
                    await trio.sleep_forever()  # lost: the caller's deadline ends it
                try:
                    reply = await channel.exchange(request, expect_reply)
                except Exception:
                    if not channel.reused:
                        raise
                    await channel.close()  # the kept stream was dead: once more on a fresh one
                    channel = await self._open(pid, peer)
                    reply = await channel.exchange(request, expect_reply)
                self._streams.keep(pid, channel)
                channel = None
                return reply
        except trio.TooSlowError:
            raise RpcError(f"timeout after {limit:g}s") from None
        except RpcError:
            raise
        except Exception as error:
            raise RpcError(f"{type(error).__name__}: {error}") from None
        finally:
            if channel is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await channel.close()

    async def _open(self, pid: ID, peer: PeerRef) -> _Channel:
        """A new stream to ``peer``: on the open connection, else through a dial."""
        if self.connected(peer):
            stream = await self.host.new_stream(pid, [self.protocol_id])
        else:
            stream = await self._dial(pid, peer)
        return _Channel(stream)

"""The kad server side as pure logic: what a DhtNode answers to each request type."""

import hashlib

import multiaddr
import pytest
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore

from parsec.kad import PeerRef, key_of
from parsec.net import pylibp2p, wire
from parsec.net.node import DhtNode, ProviderStore
from parsec.net.wire import Message, WirePeer


class _Listener:
    def get_addrs(self):
        return [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/24001")]


class _Host:
    """Just enough host for answer(): an id, a peerstore, one listen address, no sockets."""

    def __init__(self, key):
        self._id = ID.from_pubkey(key.public_key)
        self._store = PeerStore()

    def get_id(self):
        return self._id

    def get_peerstore(self):
        return self._store

    def get_network(self):
        return type("N", (), {"listeners": {"tcp": _Listener()}})()


def _peer(i: int) -> WirePeer:
    key = pylibp2p.keypair(hashlib.sha256(f"peer{i}".encode()).digest())
    return WirePeer.of(ID.from_pubkey(key.public_key), [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{10000 + i}")])


@pytest.fixture
def node():
    node = DhtNode(_Host(pylibp2p.keypair(b"\x01" * 32)), k=20)
    peers = [_peer(i) for i in range(200)]
    node.add_to_routing(peers)
    return node


def test_find_node_returns_k_closest_known_peers_without_the_sender(node):
    target = b"some key"
    sender = node.routing.closest(key_of(target), 1)[0].peer_id
    reply = node.answer(wire.request(wire.FIND_NODE, target), sender)
    got = [PeerRef.from_id(p.peer_id) for p in wire.peers_from_wire(reply.closerPeers)]
    expected = [p for p in node.routing.closest(key_of(target), 21) if p.peer_id != sender][:20]
    assert got == expected
    assert all(p.addrs for p in wire.peers_from_wire(reply.closerPeers))


def test_add_provider_only_accepts_the_sender_as_provider(node):
    key = hashlib.sha256(b"content").digest()
    honest, liar = _peer(500), _peer(501)
    node.answer(wire.request(wire.ADD_PROVIDER, key, provider=honest), honest.peer_id)
    assert node.answer(wire.request(wire.ADD_PROVIDER, key, provider=liar), honest.peer_id) is None
    reply = node.answer(wire.request(wire.GET_PROVIDERS, key), b"someone")
    assert [p.peer_id for p in wire.peers_from_wire(reply.providerPeers)] == [honest.peer_id]
    assert len(reply.closerPeers) == 20


def test_own_provider_entry_carries_our_listen_addresses(node):
    """A record the node provides itself: its entry in GET_PROVIDERS has its listen
    addresses (as go's), so a client can dial the provider without a FIND_PEER."""
    import time

    key = hashlib.sha256(b"mine").digest()
    node.providers.add(key, node.me.peer_id, now=time.time())
    reply = node.answer(wire.request(wire.GET_PROVIDERS, key), b"someone")
    [own] = wire.peers_from_wire(reply.providerPeers)
    assert own.peer_id == node.me.peer_id
    assert [str(a) for a in own.multiaddrs()] == ["/ip4/127.0.0.1/tcp/24001"]


def test_ping_and_unknown_keys():
    store = ProviderStore(ttl=10)
    store.add(b"k", b"p", now=100)
    assert store.get(b"k", now=105) == [b"p"]
    assert store.get(b"k", now=111) == []
    assert store.get(b"other", now=0) == []


def test_wire_codec_round_trip_and_errors():
    import trio

    message = wire.request(wire.GET_PROVIDERS, b"key", provider=_peer(1))
    data = wire.frame(message) + wire.frame(Message(type=wire.PING))

    class Stream:
        def __init__(self, data, chunk):
            self.data, self.chunk = data, chunk

        async def read(self, n):
            out, self.data = self.data[: self.chunk], self.data[self.chunk :]
            return out

    async def read_all(chunk):
        reader = wire.MessageReader(Stream(data, chunk))
        return [await reader.read(), await reader.read(), await reader.read()]

    for chunk in (1, 3, 1000):
        first, second, end = trio.run(read_all, chunk)
        assert first == message and second.type == wire.PING and end is None

    async def truncated():
        return await wire.MessageReader(Stream(wire.frame(message)[:-2], 100)).read()

    with pytest.raises(wire.WireError):
        trio.run(truncated)

"""The kad-dht wire format: unsigned-varint length-prefixed protobuf ``Message``s.

Uses the ``Message`` type py-libp2p generated from the libp2p kad-dht spec (the wire is
the spec's; the codec and stream handling are ours). A stream may carry several
request/response pairs in a row, as go-libp2p-kad-dht reuses streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import multiaddr
from libp2p.kad_dht.pb.kademlia_pb2 import Message
from libp2p.peer.id import ID

MAX_MESSAGE_BYTES = 4 << 20  # go-libp2p-kad-dht's msg size limit is 4 MiB

MessageType = Message.MessageType
FIND_NODE = Message.MessageType.FIND_NODE
GET_PROVIDERS = Message.MessageType.GET_PROVIDERS
ADD_PROVIDER = Message.MessageType.ADD_PROVIDER
GET_VALUE = Message.MessageType.GET_VALUE
PUT_VALUE = Message.MessageType.PUT_VALUE
PING = Message.MessageType.PING
TYPE_NAMES = {value: name for name, value in Message.MessageType.items()}


class WireError(Exception):
    """The peer sent something that is not a kad message (or closed mid-message)."""


@dataclass(frozen=True, slots=True)
class WirePeer:
    """A peer as carried in ``closerPeers`` / ``providerPeers``."""

    peer_id: bytes
    addrs: tuple[bytes, ...]

    def multiaddrs(self) -> list[multiaddr.Multiaddr]:
        out = []
        for raw in self.addrs:
            try:
                out.append(multiaddr.Multiaddr(raw))
            except Exception:  # a peer may advertise protocols we cannot parse
                continue
        return out

    @classmethod
    def of(cls, peer_id: ID, addrs: Iterable[multiaddr.Multiaddr]) -> WirePeer:
        return cls(peer_id.to_bytes(), tuple(addr.to_bytes() for addr in addrs))


def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(message: Message) -> bytes:
    body = message.SerializeToString()
    return encode_uvarint(len(body)) + body


class MessageReader:
    """Reads length-prefixed messages from a stream, keeping leftover bytes."""

    def __init__(self, stream, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max = max_bytes

    async def _fill(self, need: int) -> bool:
        while len(self._buffer) < need:
            chunk = await self._stream.read(65536)
            if not chunk:
                return False
            self._buffer.extend(chunk)
        return True

    async def read(self) -> Message | None:
        """The next message, or None at a clean end of stream."""
        length, shift, pos = 0, 0, 0
        while True:
            if not await self._fill(pos + 1):
                if pos == 0 and not self._buffer:
                    return None
                raise WireError("stream ended inside a length prefix")
            byte = self._buffer[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 35:
                raise WireError("length prefix too long")
        if length > self._max:
            raise WireError(f"message of {length} bytes exceeds {self._max}")
        if not await self._fill(pos + length):
            raise WireError("stream ended inside a message")
        body = bytes(self._buffer[pos : pos + length])
        del self._buffer[: pos + length]
        message = Message()
        try:
            message.ParseFromString(body)
        except Exception as error:  # protobuf DecodeError
            raise WireError(f"undecodable message: {error}") from None
        return message


def peers_to_wire(message_peers, peers: Iterable[WirePeer]) -> None:
    for peer in peers:
        entry = message_peers.add()
        entry.id = peer.peer_id
        entry.addrs.extend(peer.addrs)


def peers_from_wire(message_peers) -> list[WirePeer]:
    return [WirePeer(bytes(entry.id), tuple(bytes(a) for a in entry.addrs)) for entry in message_peers]


def request(kind: int, key: bytes, provider: WirePeer | None = None) -> Message:
    message = Message(type=kind, key=key)
    if provider is not None:
        peers_to_wire(message.providerPeers, [provider])
    return message

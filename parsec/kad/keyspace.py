"""The 256-bit XOR keyspace of the libp2p Kademlia DHT, with keys as plain Python ints.

Why ints: XOR, comparison and ``bit_length`` on 256-bit ints are single C calls, so a
distance costs about as much as a tuple lookup and sorting peers by distance to a target is
a plain sort on int keys. Bytes or bit strings would need a conversion per operation and be
no clearer.

Placement follows go-libp2p-kad-dht (and js-libp2p, rust-libp2p): a peer sits at
``sha256(peer-id bytes)`` and a provider record at ``sha256(multihash bytes)`` of the CID;
both are read as big-endian 256-bit integers. ``key_of`` is that mapping for either.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

Key = int
"""A point of the keyspace: an int in ``[0, 2**256)``."""

KEY_BITS = 256
KEYSPACE_SIZE = 1 << KEY_BITS


def key_of(data: bytes) -> Key:
    """Place ``data`` (peer-id bytes or a multihash) in the keyspace: sha256 as a big-endian int."""
    return int.from_bytes(hashlib.sha256(data).digest(), "big")


def distance(a: Key, b: Key) -> int:
    """The Kademlia XOR distance between two keys."""
    return a ^ b


def common_prefix_len(a: Key, b: Key) -> int:
    """How many leading bits ``a`` and ``b`` share, 0..256 (256 iff ``a == b``).

    This is the k-bucket index of ``b`` in the routing table of a peer at ``a``.
    """
    return KEY_BITS - (a ^ b).bit_length()


def normalized_distance(a: Key, b: Key) -> float:
    """XOR distance as a fraction of the keyspace, 0.0 to 1.0 (a float rounds the very
    largest distances up to 1.0).

    The k-th closest of N uniformly placed peers lies at about k/(N+1) in expectation,
    which is what network-size estimators (optimistic provide) build on.
    """
    return (a ^ b) / KEYSPACE_SIZE


@dataclass(frozen=True, slots=True)
class PeerRef:
    """A peer as the query engine sees it: its id bytes and its place in the keyspace.

    Addresses are deliberately absent: dialling is the driver's business, and keeping this
    value small and hashable lets every table and lookup use it as a dict key. The hash is
    the one a frozen dataclass computes, ``hash((peer_id, key))``, computed once: lookups
    hash every peer they hear of, and a 25,000-peer simulation hears of millions.
    """

    peer_id: bytes
    key: Key
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.key < KEYSPACE_SIZE:
            raise ValueError(f"key out of the 256-bit keyspace: {self.key!r}")
        object.__setattr__(self, "_hash", hash((self.peer_id, self.key)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple:
        # rebuilt through __init__: bytes hashes differ between processes (hash seeds)
        return PeerRef, (self.peer_id, self.key)

    @classmethod
    def from_id(cls, peer_id: bytes) -> PeerRef:
        """The reference of a peer placed as libp2p places it: at ``sha256(peer_id)``."""
        return cls(peer_id, key_of(peer_id))

    def __repr__(self) -> str:
        return f"PeerRef({self.peer_id[-6:].hex()}…, key={self.key >> 224:08x}…)"


def sort_by_distance(peers: Iterable[PeerRef], target: Key) -> list[PeerRef]:
    """``peers`` sorted by XOR distance to ``target``, closest first."""
    return sorted(peers, key=lambda peer: peer.key ^ target)


def closest_peers(peers: Iterable[PeerRef], target: Key, n: int) -> list[PeerRef]:
    """The ``n`` peers closest to ``target``, closest first (a partial sort: O(P log n))."""
    return heapq.nsmallest(n, peers, key=lambda peer: peer.key ^ target)

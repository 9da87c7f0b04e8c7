"""The keyspace arithmetic of the sweeping provider: prefixes, regions, key allocation.

Pure functions over bit-string prefixes (``"0110"``: the keys whose first bits are those,
``""`` the whole keyspace), as go-libp2p-kad-dht's ``provider/internal/keyspace`` has them
over its tries. The rules (each with its go source) are listed in ``parsec.kad.sweep``; this
module only computes. Prefixes are plain ``str`` so they print, sort and hash as they read.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .keyspace import KEY_BITS, Key, PeerRef, common_prefix_len

Prefix = str
"""A keyspace region's prefix as a bit string, ``""`` (everything) to 256 bits."""


def bits_of(key: Key, n: int) -> Prefix:
    """The first ``n`` bits of ``key`` as a prefix."""
    if n <= 0:
        return ""
    return format(key >> (KEY_BITS - n), f"0{n}b")


def prefix_range(prefix: Prefix) -> tuple[Key, Key]:
    """The keys under ``prefix``: ``[low, high)``."""
    n = len(prefix)
    low = (int(prefix, 2) << (KEY_BITS - n)) if n else 0
    return low, low + (1 << (KEY_BITS - n))


def matches(prefix: Prefix, key: Key) -> bool:
    """``key`` lies under ``prefix``."""
    low, high = prefix_range(prefix)
    return low <= key < high


def under(prefix: Prefix, peers: Iterable[PeerRef]) -> list[PeerRef]:
    """The peers whose key lies under ``prefix``."""
    low, high = prefix_range(prefix)
    return [p for p in peers if low <= p.key < high]


def children_in_order(prefix: Prefix, order: Key) -> tuple[Prefix, Prefix]:
    """The two halves of ``prefix``, the one ``order`` lies in (its next bit) first: go
    walks every trie in the order of XOR closeness to its own key (``s.order``)."""
    bit = (order >> (KEY_BITS - len(prefix) - 1)) & 1 if len(prefix) < KEY_BITS else 0
    return prefix + str(bit), prefix + str(1 - bit)


def shortest_covered_prefix(target: Key, peers: Sequence[PeerRef], target_len: int = KEY_BITS
                            ) -> tuple[Prefix, list[PeerRef]]:
    """The widest prefix of ``target`` whose every peer is in ``peers`` (the closest peers a
    lookup of ``target`` returned), and those peers (go ``ShortestCoveredPrefix``).

    The farthest returned peer shares ``c`` bits with ``target``; every peer under
    ``target[:c+1]`` is closer than it, so the lookup must have returned all of them. When
    every peer shares the same ``c`` the covered zone ``target[:c+1]`` is empty (no peer
    list). One peer: its own full key if it matches ``target[:target_len]``, else nothing.
    """
    if not peers:
        return "", []
    if len(peers) == 1:
        if common_prefix_len(target, peers[0].key) >= target_len:
            return bits_of(peers[0].key, KEY_BITS), list(peers)
        return "", []
    ordered = sorted(peers, key=lambda p: p.key ^ target)
    farthest = min(common_prefix_len(target, ordered[-1].key), target_len - 1)
    covered = [p for p in ordered if common_prefix_len(target, p.key) > farthest]
    return bits_of(target, farthest + 1), covered


def sibling(prefix: Prefix) -> Prefix:
    """``prefix`` with its last bit flipped (go ``FlipLastBit``)."""
    return prefix[:-1] + ("1" if prefix[-1] == "0" else "0")


class Coverage:
    """Prefixes a region's exploration has fully covered (go's ``coverageTrie``): adding a
    prefix already inside a covered one does nothing, adding one drops those it contains."""

    def __init__(self) -> None:
        self.prefixes: set[Prefix] = set()

    def covers(self, prefix: Prefix) -> bool:
        return any(prefix.startswith(c) for c in self.prefixes)

    def add(self, prefix: Prefix) -> None:
        if self.covers(prefix):
            return
        self.prefixes = {c for c in self.prefixes if not c.startswith(prefix)}
        self.prefixes.add(prefix)

    def gaps(self, within: Prefix, order: Key) -> list[Prefix]:
        """The widest prefixes under ``within`` no covered prefix covers, in ``order``'s
        order (go ``TrieGaps``)."""
        if self.covers(within):
            return []
        if not any(c.startswith(within) for c in self.prefixes):
            return [within]
        first, second = children_in_order(within, order)
        return self.gaps(first, order) + self.gaps(second, order)


@dataclass(frozen=True, slots=True)
class Region:
    """A keyspace region: its prefix and the peers under it (go ``keyspace.Region``)."""

    prefix: Prefix
    peers: tuple[PeerRef, ...]


def regions_from_peers(peers: Iterable[PeerRef], covered: Prefix, size: int, order: Key) -> list[Region]:
    """Cut ``covered`` into the smallest regions holding at least ``size`` of ``peers``
    each: a prefix splits only while both halves hold ``size`` peers; every peer under
    ``covered`` is in exactly one region; regions in ``order``'s order (go
    ``RegionsFromPeers`` / ``extractMinimalRegions``)."""
    inside = sorted(under(covered, peers), key=lambda p: p.key)
    if not inside:
        return []
    regions: list[Region] = []

    def cut(prefix: Prefix, members: list[PeerRef]) -> None:
        if len(prefix) < KEY_BITS:
            first, second = children_in_order(prefix, order)
            split = {first: under(first, members), second: under(second, members)}
            if len(split[first]) >= size and len(split[second]) >= size:
                cut(first, split[first])
                cut(second, split[second])
                return
        regions.append(Region(prefix, tuple(members)))

    cut(covered, inside)
    return regions


def assign_keys_to_regions(regions: Sequence[Region], keys: Iterable[Key]) -> dict[Prefix, list[Key]]:
    """Each key to the region it lies in, or else to the region whose prefix shares the
    most bits with it, so no key is dropped (go ``AssignKeysToRegions``)."""
    out: dict[Prefix, list[Key]] = {r.prefix: [] for r in regions}
    for key in keys:
        home = next((r.prefix for r in regions if matches(r.prefix, key)), None)
        if home is None:
            home = max(regions, key=lambda r: _cpl_with_prefix(key, r.prefix)).prefix
        out[home].append(key)
    return out


def _cpl_with_prefix(key: Key, prefix: Prefix) -> int:
    bits = bits_of(key, len(prefix))
    n = 0
    while n < len(prefix) and bits[n] == prefix[n]:
        n += 1
    return n


def allocate_to_k_closest(keys: Iterable[Key], peers: Sequence[PeerRef], k: int) -> dict[PeerRef, list[Key]]:
    """Every key to its ``k`` closest of ``peers``: per peer, the keys it is to hold, in
    key order (go ``AllocateToKClosest``, which walks both tries at once)."""
    out: dict[PeerRef, list[Key]] = {}
    for key in sorted(keys):
        for peer in heapq.nsmallest(k, peers, key=lambda p: p.key ^ key):
            out.setdefault(peer, []).append(key)
    return out


class KeyStore:
    """The keys a node provides, sorted, with their multihash bytes (go's ``keystore``):
    ``under(prefix)`` and ``count_up_to`` answer by bisection."""

    def __init__(self, multihashes: Iterable[bytes] = ()) -> None:
        self._bytes: dict[Key, bytes] = {}
        self._sorted: list[Key] = []
        self.put(multihashes)

    def put(self, multihashes: Iterable[bytes]) -> list[bytes]:
        """Add multihashes; the ones that were new, deduplicated."""
        from .keyspace import key_of

        fresh: list[bytes] = []
        for mh in multihashes:
            key = key_of(mh)
            if key not in self._bytes:
                self._bytes[key] = mh
                bisect.insort(self._sorted, key)
                fresh.append(mh)
        return fresh

    def bytes_of(self, key: Key) -> bytes:
        return self._bytes[key]

    def under(self, prefix: Prefix) -> list[Key]:
        low, high = prefix_range(prefix)
        return self._sorted[bisect.bisect_left(self._sorted, low):bisect.bisect_left(self._sorted, high)]

    def count_up_to(self, prefix: Prefix, limit: int) -> int:
        low, high = prefix_range(prefix)
        start = bisect.bisect_left(self._sorted, low)
        return min(limit, bisect.bisect_left(self._sorted, high, start, min(len(self._sorted), start + limit)) - start)

    def __len__(self) -> int:
        return len(self._sorted)

    def __contains__(self, key: object) -> bool:
        return key in self._bytes

"""Standard Kademlia k-buckets: at most ``k`` peers per common-prefix length with the local key.

Why not py-libp2p's table: py-libp2p splits any full bucket, so its peers end up knowing
most of the network and lookups take about one hop — not the Kademlia that go-libp2p-kad-dht
and the public DHT run. Here bucket ``i`` holds the peers whose key shares exactly ``i``
leading bits with the local key, it never splits, and a full bucket refuses newcomers (the
liveness-based eviction of real nodes is the driver's concern: it can ``remove`` a dead peer
and ``add`` another). That gives realistic tables (about ``k * log2(N / k)`` peers) and
realistic hop counts.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from .keyspace import KEY_BITS, Key, PeerRef, closest_peers, common_prefix_len


class RoutingTable:
    """k-buckets indexed by common-prefix length (0..255) with ``local.key``; no splitting."""

    def __init__(self, local: PeerRef, k: int = 20) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.local = local
        self.k = k
        # A dict per bucket: O(1) membership and removal, insertion order kept.
        self._buckets: list[dict[PeerRef, None]] = [{} for _ in range(KEY_BITS)]
        self._size = 0

    def _bucket_index(self, peer: PeerRef) -> int | None:
        """The bucket ``peer`` belongs in, or None for the local peer itself."""
        if peer.peer_id == self.local.peer_id:
            return None
        cpl = common_prefix_len(self.local.key, peer.key)
        return None if cpl == KEY_BITS else cpl

    def add(self, peer: PeerRef) -> bool:
        """Put ``peer`` in its bucket. True if it is in the table afterwards (also when it
        already was); False if it is the local peer or its bucket already holds ``k`` peers."""
        index = self._bucket_index(peer)
        if index is None:
            return False
        bucket = self._buckets[index]
        if peer in bucket:
            return True
        if len(bucket) >= self.k:
            return False
        bucket[peer] = None
        self._size += 1
        return True

    def remove(self, peer: PeerRef) -> bool:
        """Drop ``peer``; True if it was in the table."""
        index = self._bucket_index(peer)
        if index is None or peer not in self._buckets[index]:
            return False
        del self._buckets[index][peer]
        self._size -= 1
        return True

    def fill_from(self, candidates: Iterable[PeerRef]) -> int:
        """Fill every bucket's free room from ``candidates``, closest to the local key first.

        This is how the testbed bootstraps a table from the peer set it knows, instead of
        refreshing over the network. Returns how many peers were added. One sort, then each
        bucket is a contiguous slice: bucket ``c`` holds exactly the XOR gaps to the local
        key in ``[2**(255-c), 2**(256-c))``.
        """
        local_key = self.local.key
        ranked = sorted(candidates, key=lambda peer: peer.key ^ local_key)
        gaps = [peer.key ^ local_key for peer in ranked]
        added = 0
        upper = len(gaps)
        beyond_self = bisect.bisect_right(gaps, 0)  # gap 0: the local key itself
        for index in range(KEY_BITS):  # bucket 0 holds the largest gaps: walk gaps downwards
            if upper <= beyond_self:
                break
            lower = bisect.bisect_left(gaps, 1 << (KEY_BITS - 1 - index), beyond_self, upper)
            bucket = self._buckets[index]
            room = self.k - len(bucket)
            for position in range(lower, upper):
                if room <= 0:
                    break
                peer = ranked[position]
                if peer in bucket or peer.peer_id == self.local.peer_id:
                    continue
                bucket[peer] = None
                room -= 1
                added += 1
            upper = lower
        self._size += added
        return added

    def _groups_by_closeness(self, target: Key) -> Iterator[Iterable[PeerRef]]:
        """The table's peers in groups such that every peer of a group is strictly closer to
        ``target`` than every peer of any later group.

        With ``c = cpl(local, target)``: bucket ``c`` shares more than ``c`` bits with the
        target; buckets above ``c`` all share exactly ``c``; bucket ``i < c`` shares exactly
        ``i``. So ``closest`` only sorts the groups it needs, not the whole table.
        """
        cpl = common_prefix_len(self.local.key, target)
        if cpl < KEY_BITS:
            yield self._buckets[cpl]
            yield itertools.chain.from_iterable(self._buckets[cpl + 1 :])
        for index in range(cpl - 1, -1, -1):
            yield self._buckets[index]

    def closest(self, target: Key, n: int) -> list[PeerRef]:
        """The ``n`` peers of the table closest to ``target`` by XOR, closest first."""
        found: list[PeerRef] = []
        for group in self._groups_by_closeness(target):
            wanted = n - len(found)
            if wanted <= 0:
                break
            found.extend(closest_peers(group, target, wanted))
        return found

    def peers(self) -> list[PeerRef]:
        """Every peer of the table, bucket by bucket (CPL 0 first)."""
        return [peer for bucket in self._buckets for peer in bucket]

    def bucket(self, cpl: int) -> list[PeerRef]:
        """The peers of bucket ``cpl``, in insertion order."""
        return list(self._buckets[cpl])

    def bucket_sizes(self) -> dict[int, int]:
        """``{cpl: number of peers}`` for the non-empty buckets."""
        return {index: len(bucket) for index, bucket in enumerate(self._buckets) if bucket}

    def bucket_fill(self, cpl: int) -> float:
        """How full bucket ``cpl`` is, 0.0..1.0."""
        return len(self._buckets[cpl]) / self.k

    def __len__(self) -> int:
        return self._size

    def __contains__(self, peer: object) -> bool:
        if not isinstance(peer, PeerRef):
            return False
        index = self._bucket_index(peer)
        return index is not None and peer in self._buckets[index]

    def __iter__(self) -> Iterator[PeerRef]:
        return iter(self.peers())

    def __repr__(self) -> str:
        return f"RoutingTable(local={self.local!r}, k={self.k}, peers={self._size})"

"""The simulated DHT's peers: ids, places, reachability, and the tables they answer from.

Compact by design, for 25,000+ peers in one process: peers are indices into lists sorted by
key (``refs``, ``keys``), so "sorted by key" and "sorted by index" are the same order; a
reachable peer's routing table is the sorted list of its entries' keys plus the list of
their ``PeerRef``s — shared objects, one pointer per entry (≈ k·log2(N/k) entries, ~6
million for 45,000 ids) — and a FIND_NODE answer is a slice of it found by two bisects
(``Population.closest``): no per-answer objects beyond the list handed back.

Routing tables are a **fill model**, not oracle-perfect and not simulated joins (25,000
joins with refreshes would cost more than the run): bucket ``c`` of a peer (the ids sharing
exactly ``c`` leading bits with it) holds ``min(k, |bucket range|)`` reachable peers drawn
uniformly at random, without replacement, from the reachable ids in that range. So deep
buckets hold every peer near the owner, far buckets a random ``k`` of a huge range (routing
then takes the usual ``≈ log2(N/k)/log2(k)``-ish hops, not one). Unreachable ids are the
stale entries, listed as ``parsec.model.stale`` models them: each table lists each unreachable
id of its buckets' ranges with a probability that makes ``stale_entries`` (RFM 19: 15 %) of
a bucket's entries stale — few tables list a given dead id, as on the public DHT, where
crawls see many dead ids but each table holds few. Without ``stale_entries`` every
unreachable id is a candidate of every table like a reachable one, so every table is as
stale as the population (45 %: the pessimistic model). The tables are static: a real peer
evicts an entry that failed and in time lists another stale one, so the steady-state share
of stale entries is what the model fixes. The measured servers (``parsec.sim.node``) are
different: they hold real ``RoutingTable``s built by joining.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Sequence

import numpy as np

from parsec.kad import KEY_BITS, Key, PeerRef
from parsec.kad.fullrt import closest_in_sorted
from parsec.model.stale import listing_probability

ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
"""A simulated peer id: an identity multihash of an ed25519 public key's protobuf, as real
libp2p peer ids (``12D3KooW…``) are; the 32 key bytes are random."""


class Population:
    """Every peer id of the simulated DHT (see the module docstring).

    Indices ``0..n-1`` follow key order. ``reachable[i]`` is 1 for a DHT server that
    answers dials (it has a table), 0 for an id that never does; ``online[i]`` is what
    churn changes (always 0 for unreachable ids).
    """

    def __init__(self, refs: list[PeerRef], reachable: bytearray, region: bytearray, access: list[float],
                 tables: list[tuple[list[Key], list[PeerRef]] | None], k: int) -> None:
        self.refs = refs
        self.keys = [ref.key for ref in refs]
        self.index_of = {ref: i for i, ref in enumerate(refs)}  # by PeerRef: its hash is cached
        self.reachable = reachable
        self.online = bytearray(reachable)
        self.region = region
        self.access = access
        self.k = k
        self._tables = tables  # per peer: its table's keys and refs, key order; None if unreachable
        self.reachable_indices = [i for i, r in enumerate(reachable) if r]

    # ------------------------------------------------------------- building

    @classmethod
    def build(cls, peers: int, unreachable: float, *, k: int, region_weights: Sequence[float],
              access_rtt: float, access_sigma: float, seed: int, stale_entries: float | None = None) -> Population:
        """``peers`` reachable peers plus as many unreachable ids as make ``unreachable``
        of all ids, placed by ``region_weights`` with lognormal extra round trips, and the
        reachable peers' tables filled (module docstring) with ``stale_entries`` of their
        entries unreachable (``parsec.model.stale``; None: the population's share). Deterministic
        in ``seed``."""
        if not 0 <= unreachable < 1:
            raise ValueError(f"unreachable must be in [0, 1), got {unreachable}")
        rng = np.random.default_rng(seed)
        ghosts = round(peers * unreachable / (1 - unreachable))
        total = peers + ghosts
        raw = rng.bytes(32 * total)
        ids = [ID_PREFIX + raw[32 * i: 32 * i + 32] for i in range(total)]
        is_reachable = np.zeros(total, dtype=np.uint8)
        is_reachable[rng.permutation(total)[:peers]] = 1
        weights = np.asarray(region_weights, dtype=float)
        regions = rng.choice(len(weights), size=total, p=weights / weights.sum())
        extra = access_rtt * np.exp(access_sigma * rng.standard_normal(total)) if access_rtt > 0 else np.zeros(total)
        keyed = sorted(((int.from_bytes(hashlib.sha256(pid).digest(), "big"), pid, i) for i, pid in enumerate(ids)))
        refs = [PeerRef(pid, key) for key, pid, _ in keyed]
        order = np.fromiter((i for _, _, i in keyed), dtype=np.int64, count=total)
        reachable = np.ascontiguousarray(is_reachable[order])
        keys = [ref.key for ref in refs]
        owners = np.flatnonzero(reachable)
        stale = None
        if stale_entries is not None and ghosts:
            q = listing_probability(peers, ghosts, stale_entries)
            if q < 1:  # a full bucket's k draws of a range's ghosts, each kept so ≈ s of it is stale
                stale = (reachable, q, min(1.0, stale_entries / (1 - stale_entries)))
        members, bounds = fill_tables(keys, owners, k, rng, stale=stale)
        entry_keys = np.array(keys, dtype=object)[members].tolist()  # the same objects, shared
        entry_refs = np.array(refs, dtype=object)[members].tolist()
        tables: list[tuple[list[Key], list[PeerRef]] | None] = [None] * total
        for position, owner in enumerate(owners.tolist()):
            span = slice(bounds[position], bounds[position + 1])
            tables[owner] = (entry_keys[span], entry_refs[span])
        return cls(refs, bytearray(reachable.tobytes()), bytearray(regions[order].astype(np.uint8).tobytes()),
                   extra[order].tolist(), tables, k)

    # ------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self.refs)

    def closest(self, owner: int, target: Key, n: int, exclude: Key | None = None) -> list[PeerRef]:
        """The ``n`` entries of ``owner``'s table closest to ``target``, leaving out the key
        ``exclude`` (the requester, as a server does): what ``owner`` answers to a
        FIND_NODE / GET_PROVIDERS for ``target``. In key order, not distance order, when
        the answer is one whole group (below): the engine orders what it hears itself.

        The table's keys split into groups each of which is wholly closer to ``target``
        than the next (as ``RoutingTable`` splits its buckets), each a contiguous run of the
        sorted keys: the ids sharing more than ``c = cpl(owner, target)`` bits with the
        target (bucket ``c``), then those in the owner's own subtree below ``c``, then
        buckets ``c-1 … 0``. Usually bucket ``c`` alone is the answer: two bisects, a slice.
        """
        found = self._closest(owner, target, n)
        if exclude is not None and self._lists(owner, exclude) and any(ref.key == exclude for ref in found):
            found = [ref for ref in self._closest(owner, target, n + 1) if ref.key != exclude]
        return found

    def _lists(self, owner: int, key: Key) -> bool:
        """Whether ``owner``'s table has an entry for ``key``."""
        table = self._tables[owner]
        if table is None:
            return False
        keys = table[0]
        position = bisect.bisect_left(keys, key)
        return position < len(keys) and keys[position] == key

    def _closest(self, owner: int, target: Key, wanted: int) -> list[PeerRef]:
        table = self._tables[owner]
        if table is None:
            raise ValueError(f"peer {owner} is unreachable: it answers nothing")
        keys, refs = table
        own = self.keys[owner]
        c = KEY_BITS - (own ^ target).bit_length()
        found: list[PeerRef] = []
        if c < KEY_BITS:
            shift = KEY_BITS - 1 - c
            for prefix in (target >> shift, own >> shift):  # bucket c, then the owner's subtree
                found += _closest_in_run(keys, refs, prefix << shift, 1 << shift, target, wanted - len(found))
                if len(found) >= wanted:
                    break
        for depth in range(min(c, KEY_BITS) - 1, -1, -1):
            if len(found) >= wanted:
                break
            shift = KEY_BITS - 1 - depth
            low = ((own >> shift) ^ 1) << shift
            found += _closest_in_run(keys, refs, low, 1 << shift, target, wanted - len(found))
        return found

    def table(self, owner: int) -> list[PeerRef]:
        """Every entry of ``owner``'s table, in key order."""
        table = self._tables[owner]
        return [] if table is None else list(table[1])

    def true_closest(self, target: Key, n: int, *, online_only: bool = False) -> list[PeerRef]:
        """The ``n`` ids of the whole population closest to ``target`` (the truth a lookup
        is judged against), optionally only those online now."""
        wanted = n
        while True:  # widen until enough of the closest are online
            picked = [self.refs[i] for i in closest_in_sorted(self.keys, target, wanted)]
            if online_only:
                picked = [ref for ref in picked if self.online[self.index_of[ref]]]
            if len(picked) >= n or wanted >= len(self.keys):
                return picked[:n]
            wanted = min(len(self.keys), wanted * 2)

    def entries(self) -> int:
        """Table entries over all reachable peers (memory and fill reports)."""
        return sum(len(table[0]) for table in self._tables if table is not None)


def _closest_in_run(keys: list[Key], refs: list[PeerRef], low: Key, width: int, target: Key,
                    wanted: int) -> list[PeerRef]:
    """Of the entries with keys in ``[low, low + width)``, the ``wanted`` closest to
    ``target`` (all of them, unsorted, when they are no more than that)."""
    start = bisect.bisect_left(keys, low)
    end = bisect.bisect_left(keys, low + width, start)
    if end - start <= wanted:
        return refs[start:end]
    distances = [key ^ target for key in keys[start:end]]  # keys are distinct: no ties to order
    return [refs[start + i] for i in heapq.nsmallest(wanted, range(end - start), key=distances.__getitem__)]


def fill_tables(keys: Sequence[int], owners: np.ndarray, k: int, rng: np.random.Generator, *,
                stale: tuple[np.ndarray, float, float] | None = None) -> tuple[np.ndarray, list[int]]:
    """Every owner's table: per common-prefix length ``c``, ``min(k, m)`` of the ``m`` ids
    sharing exactly ``c`` leading bits with it, drawn uniformly without replacement.
    Returns ``(members, bounds)``: owner ``j``'s entries (indices, in key order) are
    ``members[bounds[j]:bounds[j+1]]``.

    ``stale`` — ``(reachable mask, q, p)`` — lists unreachable ids the way ``parsec.model.stale``
    models them: the buckets are filled from the reachable ids alone, and then each
    unreachable id of a bucket's range is listed with probability ``q`` (where the range
    has no more than ``k`` of them; where it has more, ``k`` are drawn and each kept with
    probability ``p``, so a full bucket holds its ``k`` reachable entries plus ≈ ``k·p``
    stale ones). None: every id is a candidate of every table, so each table's stale share
    is the population's.

    Vectorised over owners per depth ``c``: the ids of bucket ``c`` are the contiguous run
    of the sorted keys whose top ``c + 1`` bits are the owner's top ``c`` bits and the
    flipped next one, found with ``searchsorted`` on the keys' top 64 bits (ids sharing
    more than 64 leading bits are not expected below 2**30 peers).
    """
    total = len(keys)
    top = np.fromiter((key >> (KEY_BITS - 64) for key in keys), dtype=np.uint64, count=total)
    owner_top = top[owners]
    depths = min(_deepest_shared_prefix(keys) + 1, 64)
    if stale is None:
        pairs = _bucket_picks(top, owner_top, k, depths, rng)
    else:
        reachable, whole_keep, sampled_keep = stale
        live, dead = np.flatnonzero(reachable), np.flatnonzero(reachable == 0)
        pairs = _bucket_picks(top[live], owner_top, k, depths, rng)
        pairs[1] = live[pairs[1]]
        ghosts = _bucket_picks(top[dead], owner_top, k, depths, rng, keep=(whole_keep, sampled_keep))
        ghosts[1] = dead[ghosts[1]]
        pairs = np.concatenate([pairs, ghosts], axis=1)
    combined = pairs[0] * total + pairs[1]  # one int key, one sort: cheaper than np.lexsort on (owner, member)
    combined.sort()
    bounds = np.searchsorted(combined, np.arange(len(owners) + 1) * total).tolist()
    return combined % total, bounds


def _bucket_picks(top: np.ndarray, owner_top: np.ndarray, k: int, depths: int, rng: np.random.Generator,
                  keep: tuple[float, float] | None = None) -> np.ndarray:
    """``fill_tables``' draws from the sorted ids ``top``: (owner position, id index) pairs;
    ``keep`` thins the picks of whole ranges and of sampled ones with those probabilities."""
    positions = np.arange(len(owner_top))
    picks: list[np.ndarray] = []  # (owner position, member index) pairs, per depth
    for c in range(depths):
        shift = np.uint64(63 - c)
        base = ((owner_top >> shift) ^ np.uint64(1)) << shift
        last = base + ((np.uint64(1) << shift) - np.uint64(1))
        start = np.searchsorted(top, base, side="left").astype(np.int64)
        size = np.searchsorted(top, last, side="right").astype(np.int64) - start
        whole = (size > 0) & (size <= k)
        if whole.any():  # a bucket with room for every id of its range takes them all
            counts = size[whole]
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            picks.append(_thin(np.stack([np.repeat(positions[whole], counts), np.repeat(start[whole], counts)
                                         + offsets]), keep and keep[0], rng))
        sampled = size > k
        if sampled.any():
            draws = _distinct_draws(size[sampled], k, rng)
            picks.append(_thin(np.stack([np.repeat(positions[sampled], k), (draws + start[sampled, None]).ravel()]),
                               keep and keep[1], rng))
    return np.concatenate(picks, axis=1) if picks else np.zeros((2, 0), dtype=np.int64)


def _thin(pairs: np.ndarray, keep: float | None, rng: np.random.Generator) -> np.ndarray:
    """Each pair kept with probability ``keep`` (None: all)."""
    if keep is None or keep >= 1:
        return pairs
    return pairs[:, rng.random(pairs.shape[1]) < keep]


def _distinct_draws(size: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Per row, ``k`` distinct offsets in ``[0, size)`` (every size > k), uniformly.

    Small ranges (≤ 4k): the k smallest of ``size`` random keys. Larger ones: k draws with
    replacement, then only the repeats drawn again until none is left (a repeat is rare
    there, so this ends in a few rounds)."""
    draws = np.empty((len(size), k), dtype=np.int64)
    small = size <= 4 * k
    if small.any():
        width = int(size[small].max())
        scores = rng.random((int(small.sum()), width))
        scores[np.arange(width)[None, :] >= size[small, None]] = np.inf
        draws[small] = np.argpartition(scores, k - 1, axis=1)[:, :k]
    large = np.flatnonzero(~small)
    if len(large):
        sizes = size[large, None]
        rows = np.floor(rng.random((len(large), k)) * sizes).astype(np.int64)
        for _ in range(64):
            rows.sort(axis=1)
            repeat = np.zeros(rows.shape, dtype=bool)
            repeat[:, 1:] = rows[:, 1:] == rows[:, :-1]
            if not repeat.any():
                break
            fresh = np.floor(rng.random(rows.shape) * sizes).astype(np.int64)
            rows[repeat] = fresh[repeat]
        else:  # pragma: no cover - needs astronomically bad luck
            raise RuntimeError("could not draw distinct table entries")
        draws[large] = rows
    return draws


def _deepest_shared_prefix(keys: Sequence[int]) -> int:
    """The longest common prefix of two neighbouring sorted keys (the deepest bucket)."""
    deepest = 0
    for a, b in zip(keys, keys[1:]):
        deepest = max(deepest, KEY_BITS - (a ^ b).bit_length())
    return deepest

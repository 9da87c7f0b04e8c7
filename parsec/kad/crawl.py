"""Crawling the whole DHT: ask every reachable peer for its entire routing table.

Why: the full-routing-table client (``fullrt``) stores and looks up from a local copy of the
network, built by a crawl at start and every hour.

What is asked. A FIND_NODE for key K returns the responder's k peers closest to K. For a
responder P and a key K sharing exactly ``c`` leading bits with P, those are all of P's
bucket ``c`` (it holds at most k) topped up from deeper buckets. go's crawler therefore sends
P one FIND_NODE per CPL 0..15, all at once (16 RPCs per peer). Here:

1. first FIND_NODE(P's own id): it returns P's k closest, i.e. its deepest buckets. If it
   holds fewer than k - 1 peers, that is P's whole table (k - 1: responders may leave the
   requester out). Otherwise, if its farthest peer shares ``c`` bits with P, every bucket
   deeper than ``c`` is complete already;
2. then one FIND_NODE per CPL 0..min(c, max_cpl), all at once.

Same coverage as go with about log2(N/k) + 2 RPCs per peer instead of 16, at the cost of
one extra round trip. A peer whose own-id request fails or times out is *unreachable*; one
that answered it but failed a bucket request is *incomplete* (still reachable). No retries.

Keys. A FIND_NODE carries key bytes that the responder hashes (``key_of``), so a key with a
given CPL to P needs a sha256 preimage with a chosen prefix: ``KeyPreimages`` finds them by
hashing random sha2-256 multihash bytes (valid CIDs' multihashes: js-libp2p rejects other
keys) and remembers every prefix it has seen up to ``max_bits``, so all peers share the
search: a crawl needs at most about ``2**d * ln(2**d)`` hashes for depth d (≈ log2(N/k) + 1),
not ``2**(cpl+1)`` per request as the plain rejection sampler ``random_key_bytes_with_cpl``.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .constants import K, RPC_TIMEOUT
from .keyspace import KEY_BITS, Key, PeerRef, common_prefix_len, key_of
from .machine import Failure, Outcome, Request

SHA256_MULTIHASH_PREFIX = b"\x12\x20"
"""Multihash code sha2-256 (0x12), length 32 (0x20)."""

CRAWL_MAX_CPL = 15
"""go's crawler asks CPL 0..15 (16 FIND_NODEs per peer)."""


def _random_multihash(rng: random.Random) -> bytes:
    return SHA256_MULTIHASH_PREFIX + rng.randbytes(32)


def random_key_bytes_with_cpl(target_key: Key, cpl: int, rng: random.Random) -> bytes:
    """Random multihash bytes whose key shares exactly ``cpl`` leading bits with
    ``target_key``, by rejection sampling: about ``2 ** (cpl + 1)`` hashes."""
    if not 0 <= cpl < KEY_BITS:
        raise ValueError(f"cpl must be within [0, {KEY_BITS}), got {cpl}")
    while True:
        candidate = _random_multihash(rng)
        if common_prefix_len(target_key, key_of(candidate)) == cpl:
            return candidate


class KeyPreimages:
    """A shared, lazily filled table of preimages by key prefix (up to ``max_bits`` bits).

    ``with_cpl(target, cpl)`` returns bytes whose key shares exactly ``cpl`` bits with
    ``target``: the key's first ``cpl + 1`` bits are ``target``'s first ``cpl`` bits and the
    flipped next bit. Every hash computed while searching is filed under all its prefixes,
    so later searches mostly hit. Keys are reused across targets (as go's precomputed table
    is); the bits after the prefix are whatever the preimage happened to hash to.
    """

    def __init__(self, max_bits: int = CRAWL_MAX_CPL + 1, rng: random.Random | None = None) -> None:
        if not 1 <= max_bits <= 24:
            raise ValueError(f"max_bits must be within [1, 24], got {max_bits}")
        self.max_bits = max_bits
        self.rng = random.Random() if rng is None else rng
        self._by_prefix: dict[tuple[int, int], bytes] = {}
        self.hashes = 0  # how many candidates were hashed, for cost reports

    def with_prefix(self, prefix: int, bits: int) -> bytes:
        """Bytes whose key starts with the ``bits``-bit value ``prefix``."""
        if not 0 <= bits <= self.max_bits:
            raise ValueError(f"bits must be within [0, {self.max_bits}], got {bits}")
        wanted = (bits, prefix)
        while wanted not in self._by_prefix:
            candidate = _random_multihash(self.rng)
            self.hashes += 1
            top = key_of(candidate) >> (KEY_BITS - self.max_bits)
            for length in range(self.max_bits + 1):
                self._by_prefix.setdefault((length, top >> (self.max_bits - length)), candidate)
        return self._by_prefix[wanted]

    def with_cpl(self, target_key: Key, cpl: int) -> bytes:
        """Bytes whose key shares exactly ``cpl`` (< ``max_bits``) leading bits with
        ``target_key``."""
        if not 0 <= cpl < self.max_bits:
            raise ValueError(f"cpl must be within [0, {self.max_bits}), got {cpl}")
        prefix = (target_key >> (KEY_BITS - cpl - 1)) ^ 1
        return self.with_prefix(prefix, cpl + 1)

    def __len__(self) -> int:
        return len(self._by_prefix)


@dataclass(frozen=True, slots=True)
class CrawlRequest:
    """The crawler's own record of one request: FIND_NODE ``key_bytes`` to ``peer``.
    ``cpl`` is the bucket it asks for; None for the peer's own id (its deepest buckets).
    Handed to the driver as ``Request(peer, "find_node", key_bytes)``."""

    peer: PeerRef
    key_bytes: bytes
    cpl: int | None


@dataclass(frozen=True, slots=True)
class CrawlResult:
    """The crawl's outcome. ``reachable``: peers that answered (their own-id request), in
    the order they answered; ``unreachable``: peers whose own-id request failed or timed
    out; ``incomplete``: reachable peers with a failed bucket request. ``discovered``: every
    distinct peer heard of (seeds included). Times in the driver's clock."""

    reachable: list[PeerRef]
    unreachable: list[PeerRef]
    incomplete: list[PeerRef]
    discovered: int
    rpcs: int
    responses: int
    failures: int
    timeouts: int
    late_responses: int
    started_at: float
    finished_at: float | None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(slots=True)
class _Visit:
    """The crawl's view of one peer."""

    peer: PeerRef
    answered: bool = False
    unreachable: bool = False
    incomplete: bool = False


class Crawler:
    """Crawl from ``seeds`` until every discovered peer was asked (see the module docstring).

    At most ``max_in_flight`` requests are outstanding (go's FullRT crawler: 200 workers);
    each times out after ``rpc_timeout``. Requests go out in discovery order (breadth
    first). ``self_peer`` is never asked.
    """

    def __init__(
        self,
        seeds: Iterable[PeerRef],
        *,
        now: float,
        k: int = K,
        max_in_flight: int = 200,
        rpc_timeout: float = RPC_TIMEOUT,
        max_cpl: int = CRAWL_MAX_CPL,
        self_peer: PeerRef | None = None,
        preimages: KeyPreimages | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if k < 1 or max_in_flight < 1:
            raise ValueError(f"k and max_in_flight must be >= 1, got {k}, {max_in_flight}")
        if not rpc_timeout > 0:
            raise ValueError(f"rpc_timeout must be > 0, got {rpc_timeout}")
        self.k = k
        self.max_in_flight = max_in_flight
        self.rpc_timeout = rpc_timeout
        self.max_cpl = max_cpl
        self._self_id = None if self_peer is None else self_peer.peer_id
        if preimages is None:
            preimages = KeyPreimages(max_bits=max_cpl + 1, rng=rng)
        self.preimages = preimages
        if self.preimages.max_bits <= max_cpl:
            raise ValueError("preimages.max_bits must exceed max_cpl")

        self._visits: dict[PeerRef, _Visit] = {}
        self._queue: deque[CrawlRequest] = deque()
        self._in_flight: dict[tuple[PeerRef, bytes], CrawlRequest] = {}
        self._deadlines: list[tuple[float, int, PeerRef, bytes]] = []  # lazy min-heap
        self._expired: set[tuple[PeerRef, bytes]] = set()  # timed out: answers are late
        self._sequence = 0
        self._reachable: list[PeerRef] = []
        self._errors: Counter[str] = Counter()
        self._now = self._started_at = now
        self._finished_at: float | None = None
        self._rpcs = self._responses = self._failures = self._timeouts = self._late = 0
        self._discover(seeds)
        self._check_done()

    # ------------------------------------------------------------- driver events

    def poll(self, now: float) -> list[Request]:
        """Expire timeouts, then hand out FIND_NODEs up to the concurrency limit."""
        self._advance(now)
        sent: list[Request] = []
        while self._queue and len(self._in_flight) < self.max_in_flight:
            request = self._queue.popleft()
            deadline = now + self.rpc_timeout
            self._in_flight[(request.peer, request.key_bytes)] = request
            self._sequence += 1
            entry = (deadline, self._sequence, request.peer, request.key_bytes)
            heapq.heappush(self._deadlines, entry)
            sent.append(Request(request.peer, "find_node", request.key_bytes))
        self._rpcs += len(sent)
        return sent

    def on_outcome(self, request: Request, outcome: Outcome, now: float) -> None:
        """What came of the FIND_NODE ``request`` (its ``key`` is the key bytes asked)."""
        if request.key is None:
            raise ValueError("a crawl request carries its key bytes")
        if isinstance(outcome, Failure):
            self._failed(request.peer, request.key, now, outcome.error)
        else:
            self._answered(request.peer, request.key, outcome.closer, now)

    def _answered(self, peer: PeerRef, request_key: bytes, closer: Iterable[PeerRef], now: float) -> None:
        """``peer`` answered the FIND_NODE for ``request_key`` with ``closer``."""
        request = self._answering(peer, request_key, now)
        if request is None:
            return
        self._responses += 1
        closer = list(closer)
        self._discover(closer)
        if request.cpl is None:
            self._visits[peer].answered = True
            self._reachable.append(peer)
            self._queue_bucket_requests(peer, closer)
        self._check_done()

    def _failed(self, peer: PeerRef, request_key: bytes, now: float, error: str) -> None:
        """The FIND_NODE for ``request_key`` to ``peer`` failed."""
        request = self._answering(peer, request_key, now)
        if request is None:
            return
        self._failures += 1
        self._errors[error] += 1
        self._mark_failed(request)
        self._check_done()

    # ------------------------------------------------------------- queries

    @property
    def done(self) -> bool:
        return self._finished_at is not None

    @property
    def returnable(self) -> bool:
        """A crawl answers its caller when it is done."""
        return self._finished_at is not None

    def next_deadline(self) -> float | None:
        self._drop_settled_deadlines()
        return self._deadlines[0][0] if self._deadlines else None

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def result(self) -> CrawlResult:
        visits = self._visits.values()
        return CrawlResult(
            reachable=list(self._reachable),
            unreachable=[v.peer for v in visits if v.unreachable],
            incomplete=[v.peer for v in visits if v.incomplete],
            discovered=len(self._visits),
            rpcs=self._rpcs,
            responses=self._responses,
            failures=self._failures,
            timeouts=self._timeouts,
            late_responses=self._late,
            started_at=self._started_at,
            finished_at=self._finished_at,
            errors=dict(self._errors),
        )

    def __repr__(self) -> str:
        return (
            f"Crawler(discovered={len(self._visits)}, reachable={len(self._reachable)}, "
            f"queued={len(self._queue)}, in_flight={len(self._in_flight)})"
        )

    # ------------------------------------------------------------- internals

    def _discover(self, peers: Iterable[PeerRef]) -> None:
        for peer in peers:
            if peer in self._visits or peer.peer_id == self._self_id:
                continue
            self._visits[peer] = _Visit(peer)
            # The own id is a preimage of the peer's key by construction: key_of(peer_id).
            self._queue.append(CrawlRequest(peer, peer.peer_id, None))

    def _queue_bucket_requests(self, peer: PeerRef, deepest: list[PeerRef]) -> None:
        """After the own-id answer: ask for the buckets it did not cover completely."""
        others = [p for p in deepest if p != peer]
        if len(others) < self.k - 1:
            return  # the whole table fit in one answer
        shallowest = min(common_prefix_len(peer.key, p.key) for p in others)
        for cpl in range(min(shallowest, self.max_cpl) + 1):
            key_bytes = self.preimages.with_cpl(peer.key, cpl)
            self._queue.append(CrawlRequest(peer, key_bytes, cpl))

    def _answering(self, peer: PeerRef, request_key: bytes, now: float) -> CrawlRequest | None:
        """The awaited request an outcome settles (removed from in-flight), or None if it
        had timed out already (late) or the crawl is done."""
        self._advance(now)
        request = self._in_flight.pop((peer, request_key), None)
        if request is not None:
            return request
        if self.done or (peer, request_key) in self._expired:
            self._late += 1
            return None
        raise ValueError(f"no crawl request in flight to {peer!r} for that key")

    def _mark_failed(self, request: CrawlRequest) -> None:
        visit = self._visits[request.peer]
        if request.cpl is None:
            visit.unreachable = True
        else:
            visit.incomplete = True

    def _advance(self, now: float) -> None:
        if now < self._now:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        self._now = now
        expired = False
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, peer, key_bytes = heapq.heappop(self._deadlines)
            request = self._in_flight.pop((peer, key_bytes), None)
            if request is not None:  # else it was settled before its deadline
                self._expired.add((peer, key_bytes))
                self._timeouts += 1
                self._mark_failed(request)
                expired = True
        if expired:
            self._check_done()

    def _drop_settled_deadlines(self) -> None:
        while self._deadlines:
            _, _, peer, key_bytes = self._deadlines[0]
            if (peer, key_bytes) in self._in_flight:
                return
            heapq.heappop(self._deadlines)

    def _check_done(self) -> None:
        if not self.done and not self._queue and not self._in_flight:
            self._finished_at = self._now

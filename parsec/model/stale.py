"""Stale routing-table entries: how many of a table's entries are unreachable ids.

Two published facts about the public DHT's unreachable peers, and why both hold:

- **Crawls**: a large share of the distinct peer ids a crawl discovers never answer
  (≈26 % in RFM 19's April 2022 crawls, 5,440 of 20,811; ≈45 % of the addresses Nebula saw
  in later crawls) — the ``unreachable`` share of the testbed's and the simulator's ids.
- **Tables**: a small share of each table's *entries* is unreachable (ProbeLab RFM 19,
  "DHT Routing Table Health"): ≈15 % in the non-full buckets (the ones holding the peers
  near the table's owner, so the ones near any key a lookup ends at) and ≈4 % in the full
  ones (3.8 % in bucket 0). go-libp2p-kad-dht evicts a peer whose dial failed and pings the
  whole table at every refresh (10 min), so a dead peer lingers in few tables, and briefly.

Both hold because an unreachable id is listed by *few* tables while a live peer is listed
by every table with room for it. The model here: a table lists each unreachable id of its
buckets' ranges independently with probability ``q``, chosen so that the expected share of
stale entries in a bucket is ``stale_entries`` (``listing_probability``); reachable peers
are listed as before. ``stale_entries`` ≥ the ``unreachable`` share means every table lists
every unreachable id (``q`` = 1): the pessimistic model both used before, where a lookup's
k closest candidates near any key are ≈45 % dead and no walk can discover more than about
11 of the true 20 closest reachable peers (README "Limitations").

One value for every bucket: RFM 19's near-bucket figure (15 %), the one that matters for
where a lookup ends; for the far, full buckets it is pessimistic (measured 4 %).
"""

from __future__ import annotations

import hashlib

STALE_ENTRIES = 0.15
"""ProbeLab RFM 19: ≈15 % of the entries of non-full k-buckets were unreachable."""


def listing_probability(reachable: int, unreachable: int, stale_entries: float) -> float:
    """The chance ``q`` that a table lists a given unreachable id of a bucket's range, such
    that the bucket's entries are ``stale_entries`` unreachable in expectation:
    ``q·u / (r + q·u) = s``  ⇒  ``q = s/(1-s) · r/u`` (at most 1)."""
    if not 0 <= stale_entries < 1:
        raise ValueError(f"stale_entries must be in [0, 1), got {stale_entries}")
    if unreachable <= 0:
        return 0.0
    return min(1.0, stale_entries / (1 - stale_entries) * reachable / unreachable)


def lists(owner: bytes, ghost: bytes, probability: float) -> bool:
    """Whether the table of peer id ``owner`` lists unreachable id ``ghost``: a fixed,
    independent draw per pair (the first 8 bytes of sha256(owner ‖ ghost) as a fraction of
    2**64), so every fill and every refill of that table agrees, in any process. The Go and
    js testbed programs draw the same way (``listsGhost`` in ``testbed/go``, ``listsGhost``
    in ``testbed/js/peers.mjs``)."""
    if probability >= 1:
        return True
    if probability <= 0:
        return False
    draw = int.from_bytes(hashlib.sha256(owner + ghost).digest()[:8], "big")
    return draw < probability * 2**64

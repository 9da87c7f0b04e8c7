"""Stale routing-table entries (parsec.model.stale): the listing probability and the per-pair draw."""

from __future__ import annotations

import hashlib

import pytest

from parsec.model.stale import STALE_ENTRIES, listing_probability, lists


def test_listing_probability_gives_the_stale_share_of_a_bucket():
    q = listing_probability(25_000, 20_455, STALE_ENTRIES)
    # a bucket range with r reachable and u unreachable ids lists r + q·u entries
    assert q * 20_455 / (25_000 + q * 20_455) == pytest.approx(STALE_ENTRIES)
    assert listing_probability(100, 0, 0.15) == 0.0
    assert listing_probability(100, 10, 0.45) == 1.0  # fewer dead ids than the share asks: all listed
    with pytest.raises(ValueError, match="stale_entries"):
        listing_probability(100, 100, 1.0)


def test_lists_is_a_fixed_draw_per_pair_at_the_given_rate():
    owners = [hashlib.sha256(b"owner%d" % i).digest() for i in range(40)]
    ghosts = [hashlib.sha256(b"ghost%d" % i).digest() for i in range(250)]
    pairs = [(o, g) for o in owners for g in ghosts]
    share = sum(lists(o, g, 0.2) for o, g in pairs) / len(pairs)
    assert share == pytest.approx(0.2, abs=0.01)
    assert [lists(o, g, 0.2) for o, g in pairs[:50]] == [lists(o, g, 0.2) for o, g in pairs[:50]]
    # each owner draws independently: two owners list different ghosts
    assert {g for g in ghosts if lists(owners[0], g, 0.2)} != {g for g in ghosts if lists(owners[1], g, 0.2)}
    assert all(lists(o, g, 1.0) for o, g in pairs[:20]) and not any(lists(o, g, 0.0) for o, g in pairs[:20])

import dataclasses
import hashlib
import random

import pytest

from parsec.kad import (
    KEY_BITS,
    KEYSPACE_SIZE,
    PeerRef,
    closest_peers,
    common_prefix_len,
    distance,
    key_of,
    normalized_distance,
    sort_by_distance,
)

TOP_BIT = 1 << (KEY_BITS - 1)


def test_key_of_is_sha256_read_big_endian() -> None:
    # Known SHA-256 vectors: the empty string and "abc".
    assert key_of(b"") == 0xE3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855
    assert key_of(b"abc") == 0xBA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD
    data = bytes(range(40))
    assert key_of(data) == int(hashlib.sha256(data).hexdigest(), 16)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (0, TOP_BIT, 0),  # differ in the top bit
        (0, 1, 255),  # differ in the lowest bit only
        (12345, 12345, 256),  # identical
        (0b1100 << 252, 0b1110 << 252, 2),
        (KEYSPACE_SIZE - 1, 0, 0),
        (1 << 200, 1 << 201, 54),
    ],
)
def test_common_prefix_len(a: int, b: int, expected: int) -> None:
    assert common_prefix_len(a, b) == expected
    assert common_prefix_len(b, a) == expected


def test_distance_is_xor() -> None:
    rng = random.Random(3)
    a, b, c = (rng.getrandbits(KEY_BITS) for _ in range(3))
    assert distance(a, b) == a ^ b == distance(b, a)
    assert distance(a, a) == 0
    assert distance(a, c) == distance(a, b) ^ distance(b, c)


def test_normalized_distance() -> None:
    assert normalized_distance(0, TOP_BIT) == 0.5
    assert normalized_distance(7, 7) == 0.0
    assert normalized_distance(0, 1 << 254) == 0.25
    assert 0.0 <= normalized_distance(0, KEYSPACE_SIZE - 1) <= 1.0


def test_peer_ref_from_id_is_frozen_and_hashable() -> None:
    peer = PeerRef.from_id(b"\x12\x20peer")
    assert peer.key == key_of(b"\x12\x20peer")
    assert peer == PeerRef.from_id(b"\x12\x20peer")
    assert len({peer, PeerRef.from_id(b"\x12\x20peer")}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        peer.key = 0  # type: ignore[misc]


@pytest.mark.parametrize("bad_key", [-1, KEYSPACE_SIZE])
def test_peer_ref_rejects_keys_outside_the_keyspace(bad_key: int) -> None:
    with pytest.raises(ValueError):
        PeerRef(b"x", bad_key)


def test_sort_by_distance_and_closest_peers() -> None:
    rng = random.Random(5)
    peers = [PeerRef.from_id(rng.randbytes(34)) for _ in range(200)]
    target = rng.getrandbits(KEY_BITS)
    ordered = sort_by_distance(peers, target)
    distances = [p.key ^ target for p in ordered]
    assert distances == sorted(distances)
    assert set(ordered) == set(peers)
    assert closest_peers(peers, target, 7) == ordered[:7]
    assert closest_peers(peers, target, 500) == ordered

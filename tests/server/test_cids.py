"""CIDv0 derivation and CID parsing: known vectors, round trips, and readable rejections."""

from __future__ import annotations

import base64
import hashlib
import random

import pytest

from parsec.cids import CidError, base58_decode, base58_encode, cid_v0_for, cid_v1_string, parse_cid

HELLO = b"hello world\n"
HELLO_MH = bytes((0x12, 0x20)) + hashlib.sha256(HELLO).digest()
# Known vectors (cross-checked with the py-cid/py-multihash packages and IPFS tooling).
HELLO_V0 = "QmZjTnYw2TFhn9Nn7tjmPSoTBoY7YRkwPzwSrSbabY24Kp"
HELLO_V1_RAW_B32 = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
HELLO_V1_RAW_B58 = "zb2rhi36Gc9GJWijLEL6zW45MBux5FcFv5gJmjXA7VAMozEXY"
EMPTY_V0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"
EMPTY_V1_RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # the empty raw block


def _b32(data: bytes) -> str:
    return "b" + base64.b32encode(data).decode().rstrip("=").lower()


def test_cid_v0_of_hello_world() -> None:
    cid, multihash = cid_v0_for(HELLO)
    assert (cid, multihash) == (HELLO_V0, HELLO_MH)


def test_cid_v0_of_empty_content() -> None:
    cid, multihash = cid_v0_for(b"")
    assert cid == EMPTY_V0
    assert multihash == bytes((0x12, 0x20)) + hashlib.sha256(b"").digest()
    assert parse_cid(EMPTY_V1_RAW) == multihash


@pytest.mark.parametrize("text", [HELLO_V0, HELLO_V1_RAW_B32, HELLO_V1_RAW_B58])
def test_every_form_of_the_same_content_gives_the_same_key(text: str) -> None:
    assert parse_cid(text) == HELLO_MH


def test_cid_v1_string_matches_known_vectors_and_codecs_share_the_key() -> None:
    assert cid_v1_string(HELLO_MH) == HELLO_V1_RAW_B32
    dag_pb = cid_v1_string(HELLO_MH, codec=0x70)
    assert dag_pb.startswith("bafybei")
    assert parse_cid(dag_pb) == HELLO_MH
    big_codec = cid_v1_string(HELLO_MH, codec=0x0129)  # dag-json: a two-byte varint
    assert parse_cid(big_codec) == HELLO_MH


def test_round_trip_random_contents() -> None:
    rng = random.Random(7)
    for size in (0, 1, 31, 32, 1024, 4096):
        content = rng.randbytes(size)
        cid, multihash = cid_v0_for(content)
        assert cid.startswith("Qm") and len(cid) == 46
        assert multihash == bytes((0x12, 0x20)) + hashlib.sha256(content).digest()
        assert parse_cid(cid) == multihash
        assert parse_cid(cid_v1_string(multihash)) == multihash


def test_agrees_with_the_py_cid_package() -> None:
    cid_pkg = pytest.importorskip("cid")
    rng = random.Random(11)
    for _ in range(20):
        content = rng.randbytes(rng.randrange(0, 2048))
        ours, multihash = cid_v0_for(content)
        assert str(cid_pkg.make_cid(0, "dag-pb", multihash)) == ours
        theirs_v1 = cid_pkg.make_cid(1, "raw", multihash).encode("base32").decode()
        assert cid_v1_string(multihash) == theirs_v1
        assert parse_cid(theirs_v1) == multihash


def test_base58_round_trip_keeps_leading_zeros() -> None:
    for data in (b"", b"\0", b"\0\0\x01", b"\xff" * 40, HELLO_MH):
        assert base58_decode(base58_encode(data)) == data
    assert base58_encode(b"\0\0\x01") == "112"


BAD_CIDS = [
    ("", "empty CID"),
    ("Qm" + "0" * 44, "invalid base58btc character '0'"),
    (HELLO_V0[:-1], "a CIDv0 has 46 characters"),
    (HELLO_V0 + "a", "a CIDv0 has 46 characters"),
    ("Qm" + "1" * 44, "34-byte sha2-256 multihash"),  # valid base58, decodes to 0x121e…
    ("x" + HELLO_V1_RAW_B32[1:], "unsupported multibase prefix 'x'"),
    (HELLO_V1_RAW_B32.upper(), "unsupported multibase prefix 'B'"),
    ("f01551220" + hashlib.sha256(HELLO).hexdigest(), "unsupported multibase prefix 'f'"),
    ("b", "empty CID after the multibase prefix"),
    ("bafkrei1jjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4", "invalid base32 character '1'"),
    ("bafkreiFjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4", "invalid base32 character 'F'"),
    ("bafk", "cannot encode whole bytes"),
    (HELLO_V1_RAW_B32[:-10], "truncated multihash"),
    (_b32(bytes((1, 0x55, 0x12))), "truncated multihash length varint"),
    (_b32(bytes((1, 0x55)) + HELLO_MH + b"\0"), "1 trailing bytes"),
    (_b32(bytes((2, 0x55)) + HELLO_MH), "unsupported CID version 2"),
    (_b32(bytes((0, 0x55)) + HELLO_MH), "unsupported CID version 0"),
    (_b32(bytes((1, 0x55, 0x12, 0x10)) + bytes(16)), "sha2-256 multihash with a 16-byte digest"),
    (_b32(bytes((1,)) + b"\xff" * 10), "CID codec varint longer than 9 bytes"),
    (_b32(bytes((1, 0x80, 0x00)) + HELLO_MH), "not minimally encoded"),
    (_b32(bytes((1, 0x55))), "missing multihash"),
    ("z" + base58_encode(HELLO_MH), "must not be multibase-encoded"),
    (_b32(HELLO_MH), "must not be multibase-encoded"),
    ("b" + "a" * 600, "longer than 512"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_CIDS, ids=[reason for _, reason in BAD_CIDS])
def test_bad_cids_are_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(CidError) as caught:
        parse_cid(text)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_non_string_is_rejected() -> None:
    with pytest.raises(CidError, match="must be a string"):
        parse_cid(b"Qm")  # type: ignore[arg-type]


def test_random_garbage_never_escapes_as_another_exception() -> None:
    rng = random.Random(3)
    alphabet = "bzQmf1234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ=+/-_ \u00e9"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 70)))
        try:
            parse_cid(text)
        except CidError:
            pass

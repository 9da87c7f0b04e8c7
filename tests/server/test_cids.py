"""CIDv0 derivation and CID parsing: known vectors, round trips, and readable rejections."""

from __future__ import annotations

import base64
import hashlib
import random
import re

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


# Every reason parse_cid gives (the module's CidError texts): a rejection names one of them.
REASONS = re.compile("|".join((
    r"a CID must be a string, not \w+",
    r"empty CID",
    r"CID of \d+ characters is longer than 512",
    r"invalid base58btc character .+ at position \d+",
    r"a CIDv0 must be the base58btc of a 34-byte sha2-256 multihash",
    r"a CIDv0 has 46 characters, this one has \d+",
    r"unsupported multibase prefix .+ \(expected Qm…, 'b' base32 or 'z' base58btc\)",
    r"invalid base32 character .+ \(multibase 'b' is lower-case a-z2-7\)",
    r"base32 text of length \d+ cannot encode whole bytes",
    r"empty CID after the multibase prefix",
    r"a CIDv0 must not be multibase-encoded \(use the bare Qm… form\)",
    r"unsupported CID version \d+",
    r"truncated (CID version|CID codec|multihash code|multihash length) varint",
    r"(CID version|CID codec|multihash code|multihash length) varint is not minimally encoded",
    r"(CID version|CID codec|multihash code|multihash length) varint longer than 9 bytes",
    r"missing multihash",
    r"truncated multihash: digest has \d+ of \d+ bytes",
    r"\d+ trailing bytes after the \d+-byte multihash digest",
    r"sha2-256 multihash with a \d+-byte digest \(must be 32\)",
)))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _valid_forms(rng: random.Random) -> list[tuple[str, bytes]]:
    """(CID text, its multihash) in every form parse_cid accepts, over random contents and codecs."""
    forms = []
    for _ in range(200):
        cid, multihash = cid_v0_for(rng.randbytes(rng.randrange(0, 300)))
        codec = rng.choice((0x55, 0x70, 0x71, 0x0129, rng.randrange(0, 2**40)))
        binary = _varint(1) + _varint(codec) + multihash
        forms += [(cid, multihash), (cid_v1_string(multihash, codec=codec), multihash), (_b32(binary), multihash),
                  ("z" + base58_encode(binary), multihash)]
    return forms


def _mutations(text: str, rng: random.Random, alphabet: str) -> list[str]:
    """One substituted, deleted and inserted character, a truncation and an extension."""
    at = rng.randrange(len(text))
    return [text[:at] + rng.choice(alphabet) + text[at + 1:], text[:at] + text[at + 1:],
            text[:at] + rng.choice(alphabet) + text[at:], text[:at], text + rng.choice(alphabet)]


def test_every_valid_form_parses_and_round_trips() -> None:
    for text, multihash in _valid_forms(random.Random(5)):
        assert parse_cid(text) == multihash, text
        assert parse_cid(cid_v1_string(parse_cid(text))) == multihash
        if text.startswith("Qm"):
            assert base58_encode(parse_cid(text)) == text
        elif text.startswith("b"):  # base32 is canonical: the same codec gives the same text
            assert _b32(_base32_body(text)) == text


def _base32_body(text: str) -> bytes:
    return base64.b32decode(text[1:].upper() + "=" * (-(len(text) - 1) % 8))


def test_random_garbage_and_mutated_cids_are_rejected_with_a_documented_reason_or_parse_to_a_key() -> None:
    """Whatever the string: a key that round-trips, or a CidError (a ValueError) whose text
    is one of the documented reasons — never another exception, never the guard's
    binascii text."""
    rng = random.Random(3)
    alphabet = "bzQmf1234567890abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ=+/-_ \u00e9\0"
    inputs = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 70))) for _ in range(2000)]
    inputs += [mutated for text, _ in _valid_forms(rng) for mutated in _mutations(text, rng, alphabet)]
    parsed = rejected = 0
    for text in inputs:
        try:
            key = parse_cid(text)
        except CidError as error:
            assert isinstance(error, ValueError)
            assert REASONS.fullmatch(str(error)), (text, str(error))
            rejected += 1
            continue
        # whatever parsed is exactly one well-framed multihash: it round-trips through CIDv1
        assert parse_cid(cid_v1_string(key)) == key, text
        if len(text) == 46 and text.startswith("Qm"):
            assert len(key) == 34 and key[:2] == bytes((0x12, 0x20)), text
        parsed += 1
    assert rejected > 2000 and parsed > 0  # the garbage is rejected; some mutations (codec digits) stay valid

"""CIDs as the parsec API needs them: derive a CIDv0, parse CIDv0/CIDv1 back to a multihash.

The DHT key of a parsec measurement is the sha2-256 *multihash* of the content, and the
wire carries it as a CID string: the server answers ``POST /provide`` with a CIDv0
(``Qm…``, as the Go original does) and accepts any common CID in ``/retrieve/{cid}``.
Only what that needs is here — base58btc and base32 multibase, the unsigned-varint CIDv1
header, a multihash framing check — written out (≈100 lines) rather than imported so this
ground-level module depends on nothing but the standard library and every rejection
carries a reason a scheduler operator can act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

__all__ = [
    "SHA2_256",
    "CidError",
    "base58_decode",
    "base58_encode",
    "cid_v0_for",
    "cid_v1_string",
    "parse_cid",
]

SHA2_256 = 0x12
"""Multihash code of sha2-256, the only hash the DHTs parsec measures accept as keys."""

_SHA2_256_LEN = 32
_CIDV0_LEN = 46  # base58btc of the 34-byte multihash 0x12 0x20 <digest>
_MAX_VARINT_BYTES = 9  # multiformats unsigned-varint: at most 63 bits
_MAX_CID_CHARS = 512  # far above any real CID; keeps base58's quadratic decode cheap
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: value for value, char in enumerate(_B58_ALPHABET)}
_B32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class CidError(ValueError):
    """A string that is not a CID this server can turn into a DHT key; ``str()`` says why."""


def base58_encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (multibase ``z`` without the prefix); leading zeros → ``1``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_B58_ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    """Inverse of :func:`base58_encode`; raises :class:`CidError` naming a bad character."""
    number = 0
    for position, char in enumerate(text):
        value = _B58_INDEX.get(char)
        if value is None:
            raise CidError(f"invalid base58btc character {char!r} at position {position}")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _base32_decode(text: str) -> bytes:
    """RFC 4648 base32, lower case, unpadded (multibase ``b`` without the prefix)."""
    bad = next((char for char in text if char not in _B32_LOWER), None)
    if bad is not None:
        raise CidError(f"invalid base32 character {bad!r} (multibase 'b' is lower-case a-z2-7)")
    if len(text) % 8 in (1, 3, 6):
        raise CidError(f"base32 text of length {len(text)} cannot encode whole bytes")
    try:
        return base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except binascii.Error as error:  # unreachable after the checks above; kept as a guard
        raise CidError(f"invalid base32: {error}") from None


def _base32_encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _read_varint(data: bytes, offset: int, what: str) -> tuple[int, int]:
    """One multiformats unsigned varint at ``offset``: (value, offset after it)."""
    value = 0
    for index in range(_MAX_VARINT_BYTES):
        if offset + index >= len(data):
            raise CidError(f"truncated {what} varint")
        byte = data[offset + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if byte == 0 and index > 0:
                raise CidError(f"{what} varint is not minimally encoded")
            return value, offset + index + 1
    raise CidError(f"{what} varint longer than {_MAX_VARINT_BYTES} bytes")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _check_multihash(data: bytes) -> bytes:
    """``data`` must be exactly one multihash (code, length, digest); returns it unchanged."""
    if not data:
        raise CidError("missing multihash")
    code, offset = _read_varint(data, 0, "multihash code")
    length, offset = _read_varint(data, offset, "multihash length")
    digest = data[offset:]
    if len(digest) < length:
        raise CidError(f"truncated multihash: digest has {len(digest)} of {length} bytes")
    if len(digest) > length:
        raise CidError(f"{len(digest) - length} trailing bytes after the {length}-byte multihash digest")
    if code == SHA2_256 and length != _SHA2_256_LEN:
        raise CidError(f"sha2-256 multihash with a {length}-byte digest (must be {_SHA2_256_LEN})")
    return data


def cid_v0_for(content: bytes) -> tuple[str, bytes]:
    """The CIDv0 (``Qm…``) of raw ``content`` and its sha2-256 multihash, the DHT key."""
    multihash = bytes((SHA2_256, _SHA2_256_LEN)) + hashlib.sha256(content).digest()
    return base58_encode(multihash), multihash


def cid_v1_string(multihash: bytes, codec: int = 0x55) -> str:
    """The CIDv1 base32 string (``b…``) of a multihash; codec 0x55 (raw) gives ``bafkrei…``."""
    _check_multihash(multihash)
    return "b" + _base32_encode(_encode_varint(1) + _encode_varint(codec) + multihash)


def _parse_cid_v0(text: str) -> bytes:
    multihash = base58_decode(text)
    if len(multihash) != 2 + _SHA2_256_LEN or multihash[:2] != bytes((SHA2_256, _SHA2_256_LEN)):
        raise CidError("a CIDv0 must be the base58btc of a 34-byte sha2-256 multihash")
    return multihash


def _parse_cid_v1(binary: bytes) -> bytes:
    if binary[:1] == bytes((SHA2_256,)):
        raise CidError("a CIDv0 must not be multibase-encoded (use the bare Qm… form)")
    version, offset = _read_varint(binary, 0, "CID version")
    if version != 1:
        raise CidError(f"unsupported CID version {version}")
    _codec, offset = _read_varint(binary, offset, "CID codec")
    return _check_multihash(binary[offset:])


def parse_cid(text: str) -> bytes:
    """The multihash bytes of a CIDv0 (``Qm…``) or CIDv1 (multibase ``b`` base32 / ``z`` base58btc).

    Any codec is accepted for CIDv1: the DHT key is the multihash alone, so ``bafkrei…``
    (raw) and ``bafybei…`` (dag-pb) of the same digest name the same provider records.
    """
    if not isinstance(text, str):
        raise CidError(f"a CID must be a string, not {type(text).__name__}")
    if not text:
        raise CidError("empty CID")
    if len(text) > _MAX_CID_CHARS:
        raise CidError(f"CID of {len(text)} characters is longer than {_MAX_CID_CHARS}")
    if len(text) == _CIDV0_LEN and text.startswith("Qm"):
        return _parse_cid_v0(text)
    prefix, body = text[0], text[1:]
    if prefix == "b":
        binary = _base32_decode(body)
    elif prefix == "z":
        binary = base58_decode(body)
    elif text.startswith("Qm"):
        raise CidError(f"a CIDv0 has {_CIDV0_LEN} characters, this one has {len(text)}")
    else:
        raise CidError(f"unsupported multibase prefix {prefix!r} (expected Qm…, 'b' base32 or 'z' base58btc)")
    if not binary:
        raise CidError("empty CID after the multibase prefix")
    return _parse_cid_v1(binary)

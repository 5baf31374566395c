"""The secrets of stored keys: `sk-spill-` + 32 random base62 characters + a 6-character
checksum of them (CRC-32). The prefix lets secret scanners find a leaked key; the checksum
tells a mistyped key from a guessed one before any lookup. Only a secret's SHA-256 is kept."""

from __future__ import annotations

import secrets
import zlib

PREFIX = "sk-spill-"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY = 32  # 32 base62 characters: about 190 bits
_CHECK = 6  # base62 of a CRC-32 (< 62**6)
LENGTH = len(PREFIX) + _BODY + _CHECK


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK)


def mint() -> str:
    """A new secret, shown once to whoever asked for it."""
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY))
    return PREFIX + body + _checksum(body)


def is_ours(token: str) -> bool:
    """Whether `token` has a stored key's shape (whatever its checksum)."""
    return token.startswith(PREFIX)


def well_formed(token: str) -> bool:
    """A stored key's shape with a checksum that matches: a mistyped key fails here."""
    if len(token) != LENGTH or not token.startswith(PREFIX):
        return False
    body, check = token[len(PREFIX) : -_CHECK], token[-_CHECK:]
    return all(c in _ALPHABET for c in body) and _checksum(body) == check


def hint(token: str) -> str:
    """What may be shown of a secret after its creation: the prefix and the last four."""
    return f"{PREFIX}…{token[-4:]}"

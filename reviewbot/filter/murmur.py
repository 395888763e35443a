"""MurmurHash3 (x86, 32-bit) of a string's UTF-8 bytes, as scikit-learn's murmurhash3_32 gives it.

Why our own: the acceptance model's columns are these hashes (sklearn's HashingVectorizer and
murmurhash3_32 defined them), but importing scikit-learn for this one function pulled in
scipy.stats and cost `reviewbot filter` about half a second at every start. Callers cache a
word's column, so a pure-Python hash of each distinct word is cheap. Pure, no state.
"""

from __future__ import annotations

_MASK = 0xFFFFFFFF
_C1 = 0xCC9E2D51
_C2 = 0x1B873593


def _scramble(k: int) -> int:
    k = (k * _C1) & _MASK
    k = ((k << 15) | (k >> 17)) & _MASK
    return (k * _C2) & _MASK


def murmurhash3_32(key: str, seed: int = 0, positive: bool = False) -> int:
    """The hash of `key` (UTF-8), unsigned when `positive`, else as a signed 32-bit int."""
    data = key.encode("utf-8")
    n = len(data)
    h = seed & _MASK
    end = n - n % 4
    for i in range(0, end, 4):
        h ^= _scramble(int.from_bytes(data[i : i + 4], "little"))
        h = ((h << 13) | (h >> 19)) & _MASK
        h = (h * 5 + 0xE6546B64) & _MASK
    if end < n:
        h ^= _scramble(int.from_bytes(data[end:], "little"))
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK
    h ^= h >> 16
    if positive or h < 0x80000000:
        return h
    return h - 0x100000000

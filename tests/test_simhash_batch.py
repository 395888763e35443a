"""Batched simhashes equal the per-text simhash they replaced, for any mix of texts (fingerprints
are stored with posted comments and dismissals, so a changed bit would forget past feedback)."""

from __future__ import annotations

import hashlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.core.domain import Candidate
from reviewbot.filter.dedup import fingerprint, fingerprints, simhashes, tokens


def reference_simhash(text: str) -> int:
    """The per-text simhash as it was written before batching."""
    toks = tokens(text)
    feats = toks + [f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]
    if not feats:
        return 0
    digests = b"".join(hashlib.blake2b(f.encode("utf-8"), digest_size=8).digest() for f in feats)
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(len(feats), 8), axis=1)
    votes = (bits.astype(np.int32) * 2 - 1).sum(axis=0)
    return int.from_bytes(np.packbits(votes > 0).tobytes(), "big")


TEXTS = st.lists(
    st.sampled_from(
        [
            "",
            " ",
            "the",
            "a",
            "getUserById",
            "max_retries",
            "None",
            "raises",
            "42",
            "é",
            "checks",
            "\n",
            "null",
        ]
    ),
    max_size=25,
).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXTS, max_size=8))
def test_batched_simhashes_equal_one_by_one(texts: list[str]) -> None:
    assert simhashes(texts) == [reference_simhash(t) for t in texts]


def test_fingerprints_equal_fingerprint() -> None:
    cands = [
        Candidate(id="1", path="a.py", line=1, title="None", body="x can be None here", symbol="f"),
        Candidate(id="2", path="a.py", line=2, title="", body=""),
        Candidate(id="3", path=None, line=None, title="SQL", body="query built from user input getUserById"),
    ]
    assert fingerprints(cands) == [fingerprint(c) for c in cands]
    assert fingerprints(cands)[1].endswith(":0000000000000000")

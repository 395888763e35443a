"""The filter's own featurisation equals the sklearn + hstack one it replaced, bit for bit.

A model's coefficients are indexed by the columns sklearn's HashingVectorizer gives, so the
direct CSR construction in Featurizer.transform must produce the same matrix: same indices, same
float values (not merely close), same row order; on random texts, unicode, n-grams and numerics.
"""

from __future__ import annotations

import mmh3
import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32 as sk_murmurhash3_32

from reviewbot.core.domain import Candidate
from reviewbot.filter.acceptance import (
    NUMERIC,
    Example,
    FeatureConfig,
    Featurizer,
    load_prior,
    text_column,
)
from reviewbot.filter.severity import assess


def reference_transform(featurizer: Featurizer, examples: list[Example]) -> sp.csr_matrix:
    """The featurisation as it was: HashingVectorizer for the text, three blocks, hstack."""
    cfg = featurizer.config
    text = HashingVectorizer(
        n_features=cfg.n_text,
        ngram_range=(1, cfg.ngram_max),
        alternate_sign=False,
        norm="l2",
        lowercase=True,
    ).transform([f"{e.candidate.title} {e.candidate.body}" for e in examples])
    rows = [[col for col in featurizer._cat_columns(e)] for e in examples]
    indptr = np.cumsum([0] + [len(r) for r in rows])
    cat = sp.csr_matrix(
        (np.ones(int(indptr[-1])), np.array([c for r in rows for c in r], dtype=np.int64), indptr),
        shape=(len(examples), cfg.n_cat),
    )
    num = sp.csr_matrix(
        np.array([featurizer.numeric(e) for e in examples], dtype=np.float64).reshape(
            len(examples), len(NUMERIC)
        )
    )
    return sp.hstack([text, cat, num], format="csr")


def assert_identical(a: sp.csr_matrix, b: sp.csr_matrix) -> None:
    assert a.shape == b.shape
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)  # exact, not allclose


WORDS = st.lists(
    st.sampled_from(list("abcXYZ_019 éßİıǄ.,'\"-\n\t()") + ["None", "null", "ЖЁ", "数据", " the ", "value"]),
    max_size=60,
).map("".join)
CANDIDATES = st.builds(
    lambda title, body, conf, sev, path, rank, hunk: Candidate(
        id="c",
        path=path,
        line=3,
        title=title,
        body=body,
        confidence=conf,
        severity=sev,
        source="llm:pass1",
        rank=rank,
        hunk_size=hunk,
    ),
    WORDS,
    WORDS,
    st.one_of(st.none(), st.floats(0, 1)),
    st.sampled_from(["critical", "high", "medium", "low", "nit", None]),
    st.sampled_from(["a/b.py", "src/x.ts", "tests/test_y.go", ""]),
    st.one_of(st.none(), st.integers(0, 20)),
    st.one_of(st.none(), st.integers(0, 500)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(CANDIDATES, min_size=1, max_size=6), st.integers(1, 3), st.integers(1, 4))
def test_direct_featurisation_equals_sklearn_hstack(
    cands: list[Candidate], ngram_max: int, support: int
) -> None:
    examples = [Example(c, assess(c), support, 2, len(cands)) for c in cands]
    for cfg in (FeatureConfig(), FeatureConfig(n_text=2**10, n_cat=2**6, ngram_max=ngram_max)):
        f = Featurizer(cfg)
        assert_identical(f.transform(examples), reference_transform(f, examples))
        # the array-built path a history takes (in one chunk and in several) is the same matrix
        assert_identical(f.transform_batch(examples), reference_transform(f, examples))
        assert_identical(f.transform_batch(examples, chunk=2), f.transform_rows(examples))
        # a second call answers from the word cache: still identical
        assert_identical(f.transform(examples), reference_transform(f, examples))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.sampled_from([2**18, 2**10, 7, 1]))
def test_word_column_is_hashing_vectorizers(word: str, n: int) -> None:
    hv = HashingVectorizer(
        n_features=n, alternate_sign=False, norm=None, token_pattern=r"(?s).+", lowercase=False
    )
    row = hv.transform([word])
    if word:
        assert row.indices.tolist() == [text_column(word, n)]


def test_scores_of_the_prior_are_unchanged() -> None:
    """The shipped prior's logits through the direct matrix equal those through the old one."""
    prior = load_prior()
    cands = [
        Candidate(id=str(i), path="app/db.py", line=i, title=t, body=b, confidence=0.8, source="llm")
        for i, (t, b) in enumerate(
            [
                ("Possible None dereference", "This can raise when the value is None."),
                ("SQL injection", "The query is built with an f-string from request.args['id']."),
                ("", "Consider renaming this variable."),
            ]
        )
    ]
    examples = [Example(c, assess(c)) for c in cands]
    f = prior.featurizer()
    new = prior.logits(f.transform(examples))
    old = prior.logits(reference_transform(f, examples))
    assert np.array_equal(new, old)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=24), st.booleans(), st.sampled_from([0, 1, 2**31 + 5]))
def test_mmh3_is_sklearns_murmurhash(text: str, positive: bool, seed: int) -> None:
    """Columns are sklearn's murmurhash3_32; mmh3 (no sklearn import at start) gives the same."""
    expected = int(sk_murmurhash3_32(text, seed=seed, positive=positive))
    assert mmh3.hash(text, seed, signed=not positive) == expected

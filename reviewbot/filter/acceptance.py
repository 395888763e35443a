"""The probability that engineers act on a candidate: a hierarchical logistic model.

Layers add up in logit space: a global prior (shipped in reviewbot/data/prior.json, rebuilt by
bench/train_prior.py), an org-level correction and a repo-level correction, each fitted on its
own labels with the layers below as a fixed offset and a strong L2 penalty, so a repo with few
labels stays near its org and the prior while a busy repo learns its own taste.

Features need no fitted vocabulary: hashed word n-grams of the text, hashed categorical tokens
(category, severity, rule id, language, source) and a few numeric columns (confidence, cluster
support, hunk size, body length, hedging). Parameters are plain JSON (sparse coefficient pairs,
intercepts, feature config, version, metrics); loading them never executes code, no pickle.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from itertools import chain
from typing import Any

import mmh3
import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from reviewbot.core.domain import SEVERITIES, Candidate, severity_rank
from reviewbot.core.roles import role_tokens
from reviewbot.filter.severity import Assessment, assess
from reviewbot.filter.signals import SIGNAL_COLUMNS, signal_values

FORMAT = "reviewbot-acceptance"
FORMAT_VERSION = 1
DEFAULT_THRESHOLD = 0.5
#: What a query rule of each severity is worth before a repo has said anything about it: the
#: built-in rules are precise by construction (each ships examples that must and must not fire,
#: and fires only on added code), so a high-severity one starts above the default threshold and a
#: nit below it. Feedback moves it: RULE_PRIOR_STRENGTH is how many labels the prior counts for.
RULE_PRIOR: dict[str, float] = {"critical": 0.85, "high": 0.75, "medium": 0.62, "low": 0.45, "nit": 0.3}
RULE_PRIOR_STRENGTH = 8.0


class ModelFormatError(ValueError):
    """The JSON is not a reviewbot acceptance model this version can read."""


#: The numeric columns appended after the hashed blocks, in order.
NUMERIC: tuple[str, ...] = (
    "confidence",
    "has_confidence",
    "log_support",
    "multi_source",
    "support3",
    "support5",
    "support_share",
    "log_hunk",
    "log_length",
    "hedge",
    "concrete",
    "nit",
    "style_only",
    "is_rule",
    "has_path",
    *(f"sev_{s}" for s in SEVERITIES),
    "single_source",
    "log_review_size",
    "log_rank",
    "rank_share",
    *SIGNAL_COLUMNS,
    "rank_first",
    "rank_known",
)
#: Numeric column counts a saved model may have: the current set, and the set before rank_first
#: and rank_known were appended (such a model reads them as weight 0, so repo models learned
#: before the upgrade keep working until their next retrain).
READABLE_NUMERIC: frozenset[int] = frozenset({len(NUMERIC), len(NUMERIC) - 2})

#: Starting weights (logit per unit) of the columns that public labelled comments cannot teach,
#: because only reviewbot's own pipeline fills them in: whether the quoted code is the code at the
#: line, whether the line is added, a suggestion field, the reviewer's stated severity and
#: confidence, and the verification step's verdict. bench/train_prior.py writes them into the
#: prior for the columns its training rows leave at zero; each repo's layer then learns its own
#: correction from feedback like any other feature (so the judge's calibration is per repo).
CLAIM_PRIOR: dict[str, float] = {
    "quote_verified": 0.6,
    "on_added_line": 0.3,
    "stated_high": 0.5,
    "stated_low": -0.7,
    "stated_confidence": 1.5,
    "verified": 1.0,
    "verify_logit": 2.0,
}


#: The sev_* columns of each severity rank.
_SEVERITY_ONE_HOT: tuple[tuple[float, ...], ...] = tuple(
    tuple(1.0 if rank == k else 0.0 for k in range(len(SEVERITIES))) for rank in range(len(SEVERITIES))
)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """How candidates become feature vectors; stored with the model so scoring matches training."""

    n_text: int = 2**18
    n_cat: int = 2**12
    ngram_max: int = 1

    @property
    def n_features(self) -> int:
        return self.n_text + self.n_cat + len(NUMERIC)

    def as_dict(self) -> dict[str, int]:
        return {
            "n_text": self.n_text,
            "n_cat": self.n_cat,
            "ngram_max": self.ngram_max,
            "n_numeric": len(NUMERIC),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        cfg = cls(n_text=int(data["n_text"]), n_cat=int(data["n_cat"]), ngram_max=int(data["ngram_max"]))
        if int(data.get("n_numeric", len(NUMERIC))) not in READABLE_NUMERIC:
            raise ModelFormatError("model was built with a different numeric feature set")
        return cfg


@dataclass(slots=True)
class Example:
    """One candidate with what the filter knows about it beyond its own fields."""

    candidate: Candidate
    assessment: Assessment
    support: int = 1
    sources: int = 1  # distinct sources (passes, rules, tools) in the whole review
    review_size: int = 1  # candidates its own source raised in the whole review


def source_kind(source: str | None) -> str:
    """'rule:sql-injection' -> 'rule', 'llm:pass2' -> 'llm', a tool name stays itself."""
    if not source:
        return "unknown"
    return source.split(":", 1)[0].strip().lower() or "unknown"


def _cat_tokens(ex: Example) -> list[str]:
    c, a = ex.candidate, ex.assessment
    kind = source_kind(c.source)
    toks = [
        f"cat={a.category}",
        f"sev={a.severity}",
        f"src={kind}",
        f"src_cat={kind}|{a.category}",
        f"lang={(c.language or 'none').lower()}",
        f"sev_cat={a.severity}|{a.category}",
    ]
    if c.rule_id:
        toks.append(f"rule={c.rule_id}")
    if c.path:
        ext = c.path.rsplit(".", 1)[-1].lower() if "." in c.path.rsplit("/", 1)[-1] else "none"
        toks.append(f"ext={ext}")
        top = c.path.split("/", 1)[0].lower() if "/" in c.path else "."
        toks.append(f"dir={top}")
        if "test" in c.path.lower():
            toks.append("path=test")
        toks.append(role_tokens(c.path))
    return toks


#: sklearn's default word token pattern (HashingVectorizer's `token_pattern`, `\b\w\w+\b`), which
#: the text block has always used: a model's coefficients are indexed by these hashes. Written
#: without the `\b`s, which change nothing (a greedy run of word characters starts and ends at a
#: boundary) and cost a quarter of the tokenising of a long history.
_TOKEN = re.compile(r"\w\w+")
#: How many distinct words the per-featurizer hash cache holds before it starts afresh.
_WORD_CACHE = 1 << 17
#: From this many rows on, `Featurizer.transform` builds the matrix with array operations (a
#: history to train on); below it, row by row (a review to score, where numpy calls cost more).
_BATCH_ROWS = 256
_CHUNK_ROWS = 8192


def text_column(token: str, n_text: int) -> int:
    """The column sklearn's HashingVectorizer gives `token`: abs(signed murmurhash3) mod n
    (with its rule for -2**31, whose abs overflows an int32)."""
    h = mmh3.hash(token, 0, signed=True)
    if h == -2147483648:
        return (2147483647 - (n_text - 1)) % n_text
    return abs(h) % n_text


class Featurizer:
    """Candidates -> sparse rows. Stateless apart from its config, so it needs no storage.

    The text block is what HashingVectorizer(alternate_sign=False, norm="l2", lowercase=True,
    ngram_range=(1, ngram_max)) gives, computed here directly: the filter scores every review,
    and sklearn's per-call validation plus building and joining three sparse matrices cost more
    than the model itself (tests/test_featurize_equivalence.py checks the two are identical).
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._word_index: dict[str, int] = {}
        self._cat_index: dict[str, int] = {}
        self._cat_rows: dict[tuple[str | None, ...], list[int]] = {}

    def _words(self, text: str) -> list[str]:
        """sklearn's word analyzer: lowercase, the token pattern, then n-grams up to ngram_max."""
        tokens: list[str] = _TOKEN.findall(text.lower())
        n_max = self.config.ngram_max
        if n_max == 1:
            return tokens
        out = list(tokens)
        for n in range(2, min(n_max + 1, len(tokens) + 1)):
            out.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return out

    def text_row(self, text: str) -> tuple[list[int], list[float]]:
        """(sorted columns, l2-normalised counts) of one text's hashed words."""
        index = self._word_index
        if len(index) > _WORD_CACHE:
            index.clear()
        n_text = self.config.n_text
        counts: dict[int, int] = {}
        for word in self._words(text):
            col = index.get(word)
            if col is None:
                col = index[word] = text_column(word, n_text)
            counts[col] = counts.get(col, 0) + 1
        cols = sorted(counts)
        if not cols:
            return [], []
        # integer counts: the sum of squares is exact in any order, as in sklearn's normalize
        norm = math.sqrt(sum(counts[c] * counts[c] for c in cols))
        return cols, [counts[c] / norm for c in cols]

    def _cat_columns(self, ex: Example) -> list[int]:
        """Sorted hashed categorical columns (murmurhash3, as sklearn hashes); tokens repeat, so
        cache, and so do whole rows: they depend on a few fields only (a history has few paths)."""
        c, a = ex.candidate, ex.assessment
        key = (a.category, a.severity, c.source, c.language, c.rule_id, c.path)
        cols = self._cat_rows.get(key)
        if cols is None:
            index = self._cat_index
            found = set()
            for tok in _cat_tokens(ex):
                col = index.get(tok)
                if col is None:
                    col = index[tok] = mmh3.hash(tok, 0, signed=False) % self.config.n_cat
                found.add(col)
            cols = self._cat_rows[key] = sorted(found)
        return cols

    def numeric(self, ex: Example) -> list[float]:
        c, a = ex.candidate, ex.assessment
        body = f"{c.title} {c.body}".strip()
        return [
            float(c.confidence) if c.confidence is not None else 0.5,
            1.0 if c.confidence is not None else 0.0,
            math.log1p(max(ex.support, 1) - 1),
            1.0 if ex.support >= 2 else 0.0,
            1.0 if ex.support >= 3 else 0.0,
            1.0 if ex.support >= 5 else 0.0,
            # share of the review's sources that raised it: consensus, whatever the pool size
            (max(ex.support, 1) - 1) / max(ex.sources - 1, 1) if ex.sources > 1 else 0.0,
            math.log1p(c.hunk_size or 0) / 5.0,
            math.log1p(len(body)) / 8.0,
            a.hedge,
            1.0 if a.concrete else 0.0,
            1.0 if a.nit else 0.0,
            1.0 if a.style_only else 0.0,
            1.0 if (c.rule_id or source_kind(c.source) == "rule") else 0.0,
            1.0 if c.path else 0.0,
            *_SEVERITY_ONE_HOT[severity_rank(a.severity)],
            1.0 if ex.sources <= 1 else 0.0,
            # A source that raises many remarks on one change is right about fewer of them, and a
            # reviewer lists what matters most first. Both describe one reviewer's ordered review:
            # a comment with no known order (a human's, a rule hit) leaves them at 0, and
            # rank_known keeps "unknown" apart from "first" (public human comments, read as first
            # remarks of large reviews, had taught the prior both effects backwards).
            math.log1p(max(ex.review_size, 1) - 1) / 3.0 if c.rank is not None else 0.0,
            math.log1p(c.rank) / 3.0 if c.rank is not None else 0.0,
            c.rank / max(ex.review_size - 1, 1) if c.rank is not None and ex.review_size > 1 else 0.0,
            *signal_values(c),
            1.0 if c.rank == 0 else 0.0,
            1.0 if c.rank is not None else 0.0,
        ]

    def transform(self, examples: Sequence[Example]) -> sp.csr_matrix:
        """One CSR matrix [text | categorical | numeric], built directly: the same rows, in the
        same column order, that hstack of the three blocks gave (zeros of the numeric block are
        not stored, as a sparse matrix built from a dense one does not store them)."""
        if len(examples) >= _BATCH_ROWS:
            return self.transform_batch(examples)
        return self.transform_rows(examples)

    def transform_batch(self, examples: Sequence[Example], chunk: int = _CHUNK_ROWS) -> sp.csr_matrix:
        """`transform_rows`' matrix, bit for bit, with the per-word and per-entry work in array
        operations: a 100,000-row history spent most of its featurisation appending to lists.
        In chunks of `chunk` rows, so the words and numbers in flight stay a few megabytes."""
        parts = [self._transform_chunk(examples[i : i + chunk]) for i in range(0, len(examples), chunk)]
        if len(parts) <= 1:
            return parts[0] if parts else self._transform_chunk(examples)
        return sp.vstack(parts, format="csr")

    def _transform_chunk(self, examples: Sequence[Example]) -> sp.csr_matrix:
        cfg = self.config
        n = len(examples)
        texts = [f"{ex.candidate.title} {ex.candidate.body}" for ex in examples]
        if cfg.ngram_max == 1:
            findall = _TOKEN.findall
            words = [findall(t.lower()) for t in texts]
        else:
            words = [self._words(t) for t in texts]
        index = self._word_index
        if len(index) > _WORD_CACHE:
            index.clear()
        flat = list(chain.from_iterable(words))
        for word in set(flat).difference(index):
            index[word] = text_column(word, cfg.n_text)
        word_rows = np.repeat(np.arange(n, dtype=np.int64), [len(w) for w in words])
        word_cols = np.fromiter(map(index.__getitem__, flat), dtype=np.int64, count=len(flat))
        # (row, column) pairs sorted by row then column, with how often each occurs: the counts
        keys, counts = np.unique(word_rows * cfg.n_text + word_cols, return_counts=True)
        text_rows, text_cols = keys // cfg.n_text, keys % cfg.n_text
        # integer counts: the sum of squares is exact, as in text_row and sklearn's normalize
        norms = np.sqrt(np.bincount(text_rows, weights=counts * counts, minlength=n))
        text_vals = counts / norms[text_rows]
        cats = [self._cat_columns(ex) for ex in examples]
        cat_rows = np.repeat(np.arange(n, dtype=np.int64), [len(c) for c in cats])
        cat_cols = np.fromiter(chain.from_iterable(cats), dtype=np.int64, count=len(cat_rows))
        numeric = np.array([self.numeric(ex) for ex in examples], dtype=np.float64).reshape(n, len(NUMERIC))
        num_rows, num_cols = np.nonzero(numeric)
        # COO -> CSR keeps each row's entries in the order given: text, categorical, numeric,
        # each already sorted, so the row's columns are sorted as transform_rows' are
        return sp.csr_matrix(
            (
                np.concatenate([text_vals, np.ones(len(cat_rows)), numeric[num_rows, num_cols]]),
                (
                    np.concatenate([text_rows, cat_rows, num_rows]),
                    np.concatenate([text_cols, cfg.n_text + cat_cols, cfg.n_text + cfg.n_cat + num_cols]),
                ),
            ),
            shape=(n, cfg.n_features),
        )

    def transform_rows(self, examples: Sequence[Example]) -> sp.csr_matrix:
        """`transform` row by row, for a few rows (a review)."""
        cfg = self.config
        cat_base = cfg.n_text
        num_base = cfg.n_text + cfg.n_cat
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for ex in examples:
            cols, vals = self.text_row(f"{ex.candidate.title} {ex.candidate.body}")
            indices.extend(cols)
            data.extend(vals)
            cat = self._cat_columns(ex)
            indices.extend(cat_base + col for col in cat)
            data.extend([1.0] * len(cat))
            for k, v in enumerate(self.numeric(ex)):
                if v != 0:
                    indices.append(num_base + k)
                    data.append(v)
            indptr.append(len(indices))
        return sp.csr_matrix(
            (
                np.array(data, dtype=np.float64),
                np.array(indices, dtype=np.int32),
                np.array(indptr, dtype=np.int32),
            ),
            shape=(len(examples), cfg.n_features),
        )


@dataclass(slots=True)
class Layer:
    """One additive logistic layer: a sparse weight vector and an intercept."""

    name: str
    intercept: float
    weights: dict[int, float]
    n_train: int = 0
    l2: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    def dense(self, n_features: int) -> np.ndarray:
        w = np.zeros(n_features)
        if self.weights:
            idx = np.fromiter(self.weights.keys(), dtype=np.int64)
            w[idx] = np.fromiter(self.weights.values(), dtype=np.float64)
        return w

    def to_dict(self) -> dict[str, Any]:
        pairs = sorted(self.weights.items())
        return {
            "name": self.name,
            "intercept": self.intercept,
            "indices": [i for i, _ in pairs],
            "coefficients": [w for _, w in pairs],
            "n_train": self.n_train,
            "l2": None if math.isinf(self.l2) else self.l2,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], n_features: int) -> Layer:
        indices = data["indices"]
        coefs = data["coefficients"]
        if not isinstance(indices, list) or not isinstance(coefs, list) or len(indices) != len(coefs):
            raise ModelFormatError(f"layer {data.get('name')!r}: indices and coefficients differ")
        weights: dict[int, float] = {}
        for i, w in zip(indices, coefs, strict=True):
            if not isinstance(i, int) or not 0 <= i < n_features or not isinstance(w, int | float):
                raise ModelFormatError(f"layer {data.get('name')!r}: bad coefficient {i!r}={w!r}")
            weights[i] = float(w)
        return cls(
            name=str(data["name"]),
            intercept=float(data["intercept"]),
            weights=weights,
            n_train=int(data.get("n_train", 0)),
            l2=math.inf if data.get("l2", 0.0) is None else float(data.get("l2", 0.0)),
            metrics={str(k): float(v) for k, v in dict(data.get("metrics", {})).items()},
        )


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, logits) - y * logits))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -35, 35)))
    return out


def fit_layer(
    X: sp.csr_matrix,
    y: np.ndarray,
    offset: np.ndarray,
    *,
    l2: float,
    name: str,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 200,
    intercept_l2: float | None = None,
    init: Layer | None = None,
) -> Layer:
    """Penalised logistic regression on top of a fixed offset (the layers below).

    The loss is a *sum* over rows, so the penalty dominates when there are few rows and the
    layer's correction shrinks towards zero (i.e. towards the layers below). The intercept is
    penalised like the weights (a handful of labels must not shift a repo's base rate) unless
    `intercept_l2` says otherwise (the prior, fitted from zero, leaves it free with 0).
    """
    b_l2 = l2 if intercept_l2 is None else intercept_l2
    n = X.shape[0]
    # Optimise only the columns some row uses: an unused column's optimum is exactly 0.
    used = np.bincount(X.indices, minlength=X.shape[1]) > 0
    active = np.flatnonzero(used)  # sorted, as np.unique gave, in one pass instead of a sort
    d = len(active)
    # renumber the used columns 0..d-1 in place of X[:, active] (a general column gather, slow),
    # through a lookup table (a gather, cheaper than a binary search per entry)
    renumber = np.cumsum(used, dtype=X.indices.dtype) - 1
    X = sp.csr_matrix((X.data, renumber[X.indices], X.indptr), shape=(n, d))
    sw = np.ones(n) if sample_weight is None else sample_weight
    Xt = X.T.tocsr()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = offset + X @ w + b
        # log(1 + e^z) - y z, computed stably
        ll = np.logaddexp(0.0, z) - y * z
        r = (_sigmoid(z) - y) * sw
        f = float(sw @ ll) + 0.5 * l2 * float(w @ w) + 0.5 * b_l2 * b * b
        g = np.empty(d + 1)
        g[:d] = Xt @ r + l2 * w
        g[d] = r.sum() + b_l2 * b
        return f, g

    theta0 = np.zeros(d + 1)
    if init is not None:  # warm start, e.g. from the same layer fitted on the older rows
        theta0[:d] = np.array([init.weights.get(int(j), 0.0) for j in active])
        theta0[d] = init.intercept
    # Stop at a relative loss change of 1e-6: far below what changes a probability we report.
    # One BLAS thread: the loss's dot products over every row are a few milliseconds each, and
    # OpenBLAS's extra threads spin between them, which on a 2-core machine cost more CPU than the
    # whole fit (100,000 rows: 5.3 s -> 1.7 s CPU). It also makes the fit the same on every
    # machine: a threaded dot product sums in another order, which moves where ftol stops by ~1e-5.
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(
            loss,
            theta0,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "ftol": 1e-6, "gtol": 1e-2},
        )
    w = res.x[:d]
    nz = np.flatnonzero(np.abs(w) > 1e-6)
    return Layer(
        name=name,
        intercept=float(res.x[d]),
        weights={int(active[i]): float(w[i]) for i in nz},
        n_train=int(n),
        l2=float(l2),
    )


def auc(scores: Sequence[float], labels: Sequence[int | bool]) -> float:
    """Area under the ROC curve (ties count half); NaN when only one class is present."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


@dataclass(slots=True)
class AcceptanceModel:
    """Prior + corrections, summed in logit space; `thresholds` holds held-out (score, precision)."""

    config: FeatureConfig
    layers: list[Layer]
    thresholds: list[tuple[float, float, int]] = field(default_factory=list)
    version: int = FORMAT_VERSION
    #: rule id -> (weighted accepted, weighted labels) of this repo's feedback on that rule
    rule_counts: dict[str, tuple[float, float]] = field(default_factory=dict)
    _dense: np.ndarray | None = field(default=None, repr=False)
    _intercept: float = field(default=0.0, repr=False)
    _featurizer: Featurizer | None = field(default=None, repr=False, compare=False)

    def _combined(self) -> tuple[np.ndarray, float]:
        if self._dense is None:
            d = self.config.n_features
            self._dense = sum((layer.dense(d) for layer in self.layers), np.zeros(d))
            self._intercept = sum(layer.intercept for layer in self.layers)
        return self._dense, self._intercept

    def featurizer(self) -> Featurizer:
        """One featurizer per model, kept: its word and category hash caches then serve every
        review the model scores."""
        if self._featurizer is None:
            self._featurizer = Featurizer(self.config)
        return self._featurizer

    def logits(self, X: sp.csr_matrix) -> np.ndarray:
        w, b = self._combined()
        return np.asarray(X @ w + b, dtype=np.float64)

    def score_examples(self, examples: Sequence[Example]) -> list[float]:
        """P(accepted) per example.

        A finding of one of reviewbot's own query rules (source `rule:<id>`) is scored by that
        rule's record instead (`rule_score`): its text is the same every time, so the text model
        has nothing to learn from it, while the rule's accept rate in this repo says everything.
        """
        if not examples:
            return []
        scores = [float(p) for p in _sigmoid(self.logits(self.featurizer().transform(examples)))]
        for i, ex in enumerate(examples):
            if is_rule_finding(ex.candidate):
                scores[i] = self.rule_score(str(ex.candidate.rule_id), ex.assessment.severity)
        return scores

    def score(self, candidates: Sequence[Candidate], support: Sequence[int] | None = None) -> list[float]:
        """P(accepted) per candidate; `support` is each one's cluster support (1 when unknown)."""
        sup = list(support) if support is not None else [1] * len(candidates)
        return self.score_examples([Example(c, assess(c), s) for c, s in zip(candidates, sup, strict=True)])

    def rule_score(self, rule_id: str, severity: str) -> float:
        """Beta-smoothed precision of a query rule: RULE_PRIOR[severity] worth RULE_PRIOR_STRENGTH
        labels, then the rule's measured precision (its judged findings on real repositories,
        reviewbot/data/rule_precision.json), then this repo's feedback on the rule."""
        p0 = RULE_PRIOR.get(severity, RULE_PRIOR["low"])
        good, judged = measured_rule_precision().get(rule_id, (0.0, 0.0))
        accepted, total = self.rule_counts.get(rule_id, (0.0, 0.0))
        return (RULE_PRIOR_STRENGTH * p0 + good + accepted) / (RULE_PRIOR_STRENGTH + judged + total)

    def history_rate(self) -> tuple[float, int] | None:
        """(accept rate, labels) of the history the repo layer was trained on, if any."""
        for layer in reversed(self.layers):
            if layer.name.startswith("repo:") and "n" in layer.metrics:
                return float(layer.metrics.get("accept_rate", 0.0)), int(layer.metrics["n"])
        return None

    def with_layer(self, layer: Layer) -> AcceptanceModel:
        return AcceptanceModel(
            self.config, [*self.layers, layer], list(self.thresholds), self.version, dict(self.rule_counts)
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": self.version,
                "features": self.config.as_dict(),
                "layers": [layer.to_dict() for layer in self.layers],
                "thresholds": [[t, p, c] for t, p, c in self.thresholds],
                "rule_counts": {k: [a, n] for k, (a, n) in sorted(self.rule_counts.items())},
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> AcceptanceModel:
        """Parse model JSON; raises ModelFormatError on anything unexpected (never runs code)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFormatError("not a reviewbot acceptance model")
        if data.get("version") != FORMAT_VERSION:
            raise ModelFormatError(f"unsupported model version {data.get('version')!r}")
        try:
            config = FeatureConfig.from_dict(data["features"])
            layers = [Layer.from_dict(layer, config.n_features) for layer in data["layers"]]
            thresholds = [(float(t), float(p), int(c)) for t, p, c in data.get("thresholds", [])]
            rule_counts = {
                str(k): (float(a), float(n)) for k, (a, n) in dict(data.get("rule_counts", {})).items()
            }
            if any(not (0 <= a <= n) for a, n in rule_counts.values()):
                raise ModelFormatError("malformed model: rule_counts must satisfy 0 <= accepted <= total")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelFormatError):
                raise
            raise ModelFormatError(f"malformed model: {exc}") from exc
        return cls(config, layers, thresholds, FORMAT_VERSION, rule_counts)


@lru_cache(maxsize=1)
def measured_rule_precision() -> dict[str, tuple[float, float]]:
    """rule id -> (findings judged true, findings judged) over real repositories; a debatable one
    counts half. Written by bench/rules_real_repos.py from bench/rules_judgements.json."""
    path = resources.files("reviewbot").joinpath("data/rule_precision.json")
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): (float(v["true"]), float(v["judged"])) for k, v in dict(data.get("rules", {})).items()}


def load_prior() -> AcceptanceModel:
    """The global prior shipped with the package (reviewbot/data/prior.json)."""
    text = resources.files("reviewbot").joinpath("data/prior.json").read_text(encoding="utf-8")
    return AcceptanceModel.from_json(text)


# ---------------------------------------------------------------------------------------------
# Training from history


@dataclass(slots=True)
class HistoryRow:
    """A finding a deployment posted earlier and what engineers did with it."""

    candidate: Candidate
    accepted: bool
    at: str = ""
    support: int = 1
    sources: int = 1
    cluster: str = ""  # the issue it belonged to in its review ("" = its own)
    assessment: Assessment | None = None  # severity.assess(candidate), when already computed
    weight: float = 1.0  # how much the label counts (a weak dismissal of an untouched comment: 0.2)
    review_size: int = 1  # candidates its own source raised in its review


def is_rule_finding(candidate: Candidate) -> bool:
    """A finding of one of reviewbot's own tree-sitter query rules, or of a linter rule imported
    from SARIF (source `sarif:<tool>`, reviewbot.review.sarif_in): fixed texts, scored by their record."""
    return bool(candidate.rule_id) and (candidate.source or "").startswith(("rule:", "sarif:"))


def rule_counts(rows: Sequence[HistoryRow]) -> dict[str, tuple[float, float]]:
    """rule id -> (weighted accepted, weighted labels) over the query-rule findings in `rows`."""
    counts: dict[str, tuple[float, float]] = {}
    for row in rows:
        if is_rule_finding(row.candidate):
            a, n = counts.get(str(row.candidate.rule_id), (0.0, 0.0))
            counts[str(row.candidate.rule_id)] = (a + row.weight * row.accepted, n + row.weight)
    return counts


def org_of(repo: str | None) -> str:
    return (repo or "").split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Penalties per level: larger means 'trust the level below more'."""

    org_l2: float = 8.0
    repo_l2: float = 32.0  # used when the history is too short to choose from repo_l2_grid
    repo_l2_grid: tuple[float, ...] = (2.0, 8.0, 32.0, 128.0)
    max_holdout_fit: int = 20_000
    max_cv_rows: int = 5_000
    cv_folds: int = 5
    holdout_fraction: float = 0.25
    min_holdout: int = 20


def history_examples(rows: Sequence[HistoryRow]) -> list[Example]:
    """History rows as scoring examples (with the support they had in their review)."""
    return [
        Example(r.candidate, r.assessment or assess(r.candidate), r.support, r.sources, r.review_size)
        for r in rows
    ]


def _grouped_cv(
    model: AcceptanceModel,
    X: sp.csr_matrix,
    y: np.ndarray,
    rows: Sequence[HistoryRow],
    prs: list[int | None],
    settings: TrainSettings,
) -> tuple[float, np.ndarray]:
    """(chosen penalty, out-of-fold probabilities under it); math.inf means 'no repo layer'."""
    k = min(settings.cv_folds, len(prs))
    fold_of_pr = {pr: (i * k) // len(prs) for i, pr in enumerate(prs)}
    folds = np.array([fold_of_pr[r.candidate.pr] for r in rows])
    base = model.logits(X)
    best_l2, best_logits = math.inf, base
    best_loss = _log_loss(base, y)
    for l2 in settings.repo_l2_grid:
        logits = base.copy()
        for f in range(k):
            train_idx, test_idx = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            if not 0 < y[train_idx].sum() < len(train_idx):
                continue  # one class only: the fold keeps the layers below
            layer = fit_layer(X[train_idx], y[train_idx], base[train_idx], l2=l2, name="cv")
            w = layer.dense(X.shape[1])
            logits[test_idx] = base[test_idx] + X[test_idx] @ w + layer.intercept
        loss = _log_loss(logits, y)
        if loss < best_loss - 1e-9:
            best_l2, best_logits, best_loss = l2, logits, loss
    return best_l2, _sigmoid(best_logits)


def _representatives(rows: Sequence[HistoryRow], scores: np.ndarray) -> np.ndarray:
    """Indices of the best-scored row of each (repo, pr, cluster); unclustered rows stand alone."""
    best: dict[tuple[str | None, int | None, str], int] = {}
    for i, row in enumerate(rows):
        key = (row.candidate.repo, row.candidate.pr, row.cluster or f"#{i}")
        if key not in best or scores[i] > scores[best[key]]:
            best[key] = i
    return np.array(sorted(best.values()), dtype=np.int64)


def _threshold_table(scores: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, int]]:
    """Precision of 'score >= t' for t at every distinct held-out score (at most ~100 points)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order].astype(np.float64)
    tp = np.cumsum(y)
    count = np.arange(1, len(s) + 1)
    table: list[tuple[float, float, int]] = []
    step = max(1, len(s) // 100)
    for k in range(len(s)):
        last_of_tie = k == len(s) - 1 or s[k + 1] != s[k]
        if last_of_tie and (k % step == 0 or k == len(s) - 1 or step == 1):
            table.append((float(s[k]), float(tp[k] / count[k]), int(count[k])))
    return table


def _fit_level(base: AcceptanceModel, X: sp.csr_matrix, y: np.ndarray, *, l2: float, name: str) -> Layer:
    return fit_layer(X, y, base.logits(X), l2=l2, name=name)


def train(
    history_rows: Sequence[HistoryRow],
    prior: AcceptanceModel,
    *,
    repo: str | None = None,
    settings: TrainSettings = TrainSettings(),
    org_layer: Layer | None = None,
) -> AcceptanceModel:
    """A repo's model: the prior, an org correction (its org's rows) and a repo correction.

    `history_rows` may hold many repos; `repo` picks whose model this is (the only repo present
    when omitted). The threshold table for `target_precision` comes from a time-ordered hold-out:
    the repo layer is fitted on the older rows, the newer rows are scored, then it is refitted on
    all rows. With no rows for the repo the prior (plus org layer) is returned unchanged.
    """
    repos = {r.candidate.repo for r in history_rows}
    if repo is None:
        if len(repos) > 1:
            raise ValueError(f"history holds {len(repos)} repos; say which model to train")
        repo = next(iter(repos), None)
    featurizer = prior.featurizer()
    model = prior
    org = org_of(repo)
    org_rows = [r for r in history_rows if org_of(r.candidate.repo) == org]
    # oldest first (stable: rows with equal or missing `at` keep their given order)
    repo_rows = sorted((r for r in history_rows if r.candidate.repo == repo), key=lambda r: r.at)
    if org_layer is not None:
        model = model.with_layer(org_layer)
    elif len(org_rows) > len(repo_rows):
        # An org layer only adds something when the org has other repos' labels.
        X_org = featurizer.transform(history_examples(org_rows))
        y_org = np.array([r.accepted for r in org_rows], dtype=np.float64)
        model = model.with_layer(_fit_level(model, X_org, y_org, l2=settings.org_l2, name=f"org:{org}"))
    if not repo_rows:
        return model
    X = featurizer.transform(history_examples(repo_rows))
    y = np.array([r.accepted for r in repo_rows], dtype=np.float64)
    n = len(repo_rows)
    thresholds: list[tuple[float, float, int]] = []
    n_hold = int(n * settings.holdout_fraction)
    l2 = settings.repo_l2
    early: Layer | None = None
    prs = list(dict.fromkeys(r.candidate.pr for r in repo_rows))  # review order, oldest first
    if n <= settings.max_cv_rows and len(prs) >= 3 and 0 < y.sum() < n:
        # A short history: grouped cross-validation by PR (folds of consecutive PRs) gives every
        # row an out-of-fold score; the penalty with the lowest out-of-fold log-loss wins, and
        # those scores feed the `target_precision` table. Cheap at this size, far steadier than
        # a hold-out of one or two PRs.
        l2, oof = _grouped_cv(model, X, y, repo_rows, prs, settings)
        keep = _representatives(repo_rows, oof)
        thresholds = _threshold_table(oof[keep], y[keep])
    elif n_hold >= settings.min_holdout and 0 < y[: n - n_hold].sum() < n - n_hold:
        # Time-ordered hold-out: fit on the older rows, judge on the newer ones. It picks how
        # far this repo may move from the layers below (math.inf = not at all) and gives the
        # held-out scores that `target_precision` thresholds are read from. A long history has
        # labels enough that the penalty matters little: it is fitted on the latest
        # `max_holdout_fit` older rows with the default penalty only, to keep training fast.
        start = max(0, n - n_hold - settings.max_holdout_fit)
        X_old, y_old = X[start : n - n_hold], y[start : n - n_hold]
        X_new, y_new = X[n - n_hold :], y[n - n_hold :]
        grid = settings.repo_l2_grid if n <= settings.max_holdout_fit else (settings.repo_l2,)
        base_new = model.logits(X_new)
        best_loss = _log_loss(base_new, y_new)
        best_scores = _sigmoid(base_new)
        l2 = math.inf
        for candidate_l2 in grid:
            fitted = _fit_level(model, X_old, y_old, l2=candidate_l2, name="holdout")
            logits_new = model.with_layer(fitted).logits(X_new)
            loss = _log_loss(logits_new, y_new)
            if loss < best_loss - 1e-9:
                best_loss, best_scores, l2, early = loss, _sigmoid(logits_new), candidate_l2, fitted
        # Precision as the filter would have posted: one comment per issue (the best-scored
        # member of each cluster), so duplicates of an accepted finding do not inflate it.
        new_rows = repo_rows[n - n_hold :]
        keep = _representatives(new_rows, best_scores)
        thresholds = _threshold_table(best_scores[keep], y_new[keep])
    weights = np.array([r.weight for r in repo_rows], dtype=np.float64)
    if math.isinf(l2):
        layer = Layer(name=f"repo:{repo}", intercept=0.0, weights={}, n_train=n, l2=math.inf)
    else:
        layer = fit_layer(
            X, y, model.logits(X), l2=l2, name=f"repo:{repo}", init=early, sample_weight=weights
        )
    base_scores = _sigmoid(model.logits(X))
    layer.metrics = {
        "n": float(n),
        "accept_rate": float(y.mean()),
        "base_auc": auc(base_scores.tolist(), y.tolist()),
        "l2": float(l2) if not math.isinf(l2) else -1.0,
    }
    out = model.with_layer(layer)
    out.thresholds = thresholds
    out.rule_counts = rule_counts(repo_rows)
    return out


class ModelBank:
    """Per-repo models for a history that holds many repos, sharing each org's layer."""

    def __init__(
        self,
        history_rows: Sequence[HistoryRow],
        prior: AcceptanceModel,
        settings: TrainSettings = TrainSettings(),
    ) -> None:
        self.prior = prior
        self.settings = settings
        self.rows = list(history_rows)
        self._org_layers: dict[str, Layer | None] = {}
        self._models: dict[str | None, AcceptanceModel] = {}

    def _org_layer(self, org: str, repo: str | None) -> Layer | None:
        if org not in self._org_layers:
            org_rows = [r for r in self.rows if org_of(r.candidate.repo) == org]
            repos = {r.candidate.repo for r in org_rows}
            if len(repos) < 2:
                self._org_layers[org] = None
            else:
                featurizer = self.prior.featurizer()
                X = featurizer.transform(history_examples(org_rows))
                y = np.array([r.accepted for r in org_rows], dtype=np.float64)
                self._org_layers[org] = _fit_level(
                    self.prior, X, y, l2=self.settings.org_l2, name=f"org:{org}"
                )
        return self._org_layers[org]

    def for_repo(self, repo: str | None) -> AcceptanceModel:
        if repo not in self._models:
            org_layer = self._org_layer(org_of(repo), repo)
            rows = [r for r in self.rows if r.candidate.repo == repo]
            if org_layer is not None:
                # pass the shared org layer; train() then fits only the repo layer
                self._models[repo] = train(
                    rows, self.prior, repo=repo, settings=self.settings, org_layer=org_layer
                )
            else:
                self._models[repo] = train(rows, self.prior, repo=repo, settings=self.settings)
        return self._models[repo]


def with_support(
    rows: Iterable[HistoryRow],
    support: Sequence[int],
    sources: Sequence[int],
    clusters: Sequence[str] | None = None,
    assessments: Sequence[Assessment | None] | None = None,
    review_sizes: Sequence[int] | None = None,
) -> list[HistoryRow]:
    """Rows with their cluster support, review source count, cluster and assessment filled in;
    each row keeps its label weight (a weak label must not train as a full one)."""
    rows = list(rows)
    names = list(clusters) if clusters is not None else [r.cluster for r in rows]
    found = list(assessments) if assessments is not None else [r.assessment for r in rows]
    sizes = list(review_sizes) if review_sizes is not None else [r.review_size for r in rows]
    return [
        HistoryRow(r.candidate, r.accepted, r.at, s, n, c, a, r.weight, z)
        for r, s, n, c, a, z in zip(rows, support, sources, names, found, sizes, strict=True)
    ]

"""Clustering candidates that describe the same issue, and fingerprints that survive pushes.

Several LLM passes, rules and tools raise the same issue in different words; engineers want it
once. Within one review we cluster by place (same path, nearby lines) and by text (tf-idf cosine
over normalised tokens, identifiers kept whole); candidates on different paths never merge. How
many distinct sources raised a cluster is its *support*, a strong signal of a real issue.

Across pushes a fingerprint (path + enclosing symbol + a simhash of the normalised claim) stays
the same when lines shift, and two fingerprints can be compared fuzzily (same path and symbol,
near simhash) so a reworded copy of a dismissed finding is still recognised. Pure functions.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain

import numpy as np

from reviewbot.core.domain import Candidate

_STOP_TEXT = """a an the and or but if then else of to in on at for from by with without into onto this that
    these those it its is are was were be been being has have had do does did not no can could
    should would will shall may might must so as than too very just also there here which who whom
    what when where why how all any both each few more most other some such only own same i you we
    they he she them our your their me my us line lines code here please see use used using"""
STOPWORDS = frozenset(_STOP_TEXT.split())
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def _stem(word: str) -> str:
    """A crude suffix strip: enough to make 'checks'/'checked'/'checking' one token."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    """Normalised content tokens: lower case, stemmed, numbers and stop words dropped.

    An identifier (`getUserById`, `max_retries`) is kept whole *and* split into its parts, so two
    descriptions naming the same function match strongly.
    """
    return list(chain.from_iterable(map(_word_tokens, _WORD.findall(text))))


@lru_cache(maxsize=1 << 16)
def _word_tokens(raw: str) -> tuple[str, ...]:
    """The tokens of one word. Cached: words repeat across a review and across a long history,
    and `reviewbot filter` clusters every past review before training (100,000 rows)."""
    if raw.isdigit():
        return ()
    low = raw.lower()
    is_identifier = "_" in raw or (any(c.isupper() for c in raw[1:]) and any(c.islower() for c in raw))
    if is_identifier:
        parts = [p.lower() for p in _CAMEL.findall(raw.replace("_", " "))]
        return ("id:" + low, *(_stem(p) for p in parts if len(p) > 2 and p not in STOPWORDS))
    if len(low) > 2 and low not in STOPWORDS:
        return (_stem(low),)
    return ()


def similarity_matrix(texts: Sequence[str], *, docs: Sequence[list[str]] | None = None) -> np.ndarray:
    """Pairwise tf-idf cosine similarity of `texts` (idf from the texts themselves).

    Built with array operations (the filter clusters every past review before training, so this
    runs thousands of times); tf and idf come from math.log lookups, so the numbers are exactly
    those of the plain per-token loop. `docs`: the texts' `tokens`, when the caller has them.
    """
    if docs is None:
        docs = [tokens(t) for t in texts]
    n = len(docs)
    vocab = sorted(set(chain.from_iterable(docs)))
    if not vocab:
        return np.zeros((n, n), dtype=np.float64)
    index = {tok: i for i, tok in enumerate(vocab)}
    rows = np.repeat(np.arange(n, dtype=np.int64), [len(doc) for doc in docs])
    cols = np.fromiter(map(index.__getitem__, chain.from_iterable(docs)), dtype=np.int64)
    counts = np.bincount(rows * len(vocab) + cols, minlength=n * len(vocab)).reshape(n, len(vocab))
    df = (counts > 0).sum(axis=0)
    idf = np.array([math.log((1 + n) / (1 + d)) + 1.0 for d in range(n + 1)])[df]
    tf = np.array([0.0] + [1 + math.log(c) for c in range(1, int(counts.max()) + 1)])[counts]
    mat = tf * idf[None, :]
    norms = np.linalg.norm(mat, axis=1)
    norms[norms == 0] = 1.0
    mat /= norms[:, None]
    similarity: np.ndarray = mat @ mat.T
    return similarity


@dataclass(frozen=True, slots=True)
class DedupSettings:
    """Thresholds for calling two candidates the same issue: the same thing said about the same code.

    `threshold` is the text similarity needed with no place information (no paths or lines).
    On one path, lines within `same_code` of each other are the same code and need
    `near_threshold`; lines up to `window` apart need `far_threshold` (two passes may anchor
    one remark on neighbouring lines); lines further apart are different places and never merge,
    whatever the text says (the same rule at two places is two comments).
    """

    threshold: float = 0.20
    near_threshold: float = 0.20
    far_threshold: float = 0.45
    same_code: int = 2
    window: int = 10
    copy_threshold: float = 0.8


@dataclass(slots=True)
class Cluster:
    """Candidates (by index into the review) judged to be one issue; `members[0]` is the best."""

    id: str
    members: list[int] = field(default_factory=list)
    sources: set[str] = field(default_factory=set)

    @property
    def representative(self) -> int:
        return self.members[0]

    @property
    def support(self) -> int:
        """How many distinct sources (passes, rules, tools) raised this issue."""
        return len(self.sources)


def _rule_of(c: Candidate) -> str | None:
    """The query rule that raised it (rule findings of different rules are different issues)."""
    if c.rule_id and (c.source or "").startswith("rule"):
        return c.rule_id
    return None


def _needs(candidates: Sequence[Candidate], settings: DedupSettings) -> np.ndarray:
    """Pairwise similarity needed to merge, NaN where two candidates may never merge.

    Called per path (see cluster_candidates), so every pair here shares its path or has none.
    Two findings of query rules merge only when they are the same rule at the same place; a
    different rule is a different claim however close. Place decides the rest (see DedupSettings).
    """
    n = len(candidates)
    has_line = np.array([c.line is not None and c.path is not None for c in candidates])
    lo = np.array([c.line if c.line is not None else 0 for c in candidates], dtype=np.int64)
    hi = np.array([max(c.end_line or 0, c.line or 0) for c in candidates], dtype=np.int64)
    need = np.full((n, n), settings.threshold)
    lines = has_line[:, None] & has_line[None, :]
    gap = np.maximum(lo[:, None], lo[None, :]) - np.minimum(hi[:, None], hi[None, :])
    need[lines & (gap <= settings.same_code)] = settings.near_threshold
    need[lines & (gap > settings.same_code) & (gap <= settings.window)] = settings.far_threshold
    need[lines & (gap > settings.window)] = np.nan
    rules = [_rule_of(c) for c in candidates]
    if any(rules):
        rid = {r: k for k, r in enumerate(sorted({r for r in rules if r}))}
        code = np.array([rid[r] if r else -1 for r in rules])
        both = (code[:, None] >= 0) & (code[None, :] >= 0)
        other_rule = both & (code[:, None] != code[None, :])
        same_rule_elsewhere = both & (code[:, None] == code[None, :]) & ~(lines & (gap <= 0))
        need[other_rule | same_rule_elsewhere] = np.nan
    return need


def _some_pair_may_merge(candidates: Sequence[Candidate], settings: DedupSettings) -> bool:
    """Whether `_needs` leaves any pair free to merge, pair by pair in plain Python: a review's
    path holds a few candidates, where numpy's per-call cost is most of the work, and a long
    history's cluster pass asks this for every path of every past review."""
    spans = [
        (
            c.line is not None and c.path is not None,
            c.line or 0,
            max(c.end_line or 0, c.line or 0),
            _rule_of(c),
        )
        for c in candidates
    ]
    for k in range(1, len(spans)):
        has_k, lo_k, hi_k, rule_k = spans[k]
        for j in range(k):
            has_j, lo_j, hi_j, rule_j = spans[j]
            lines = has_k and has_j
            gap = max(lo_k, lo_j) - min(hi_k, hi_j)
            if lines and gap > settings.window:
                continue  # different places
            if rule_k and rule_j and (rule_k != rule_j or not (lines and gap <= 0)):
                continue  # different rules, or one rule at two places
            return True
    return False


#: Up to this many candidates on one path, `_some_pair_may_merge` asks first (in Python).
_SMALL_PATH = 32


def cluster_candidates(
    candidates: Sequence[Candidate],
    *,
    priority: Callable[[int], tuple[float, ...]],
    settings: DedupSettings = DedupSettings(),
    prefix: str = "c",
    claims: Sequence[list[str]] | None = None,
) -> tuple[list[Cluster], list[int]]:
    """Cluster one review's candidates; returns (clusters, cluster index for every candidate).

    Candidates on different paths never merge, so each path is clustered alone (memory grows
    with the largest path's candidates squared, not the review's). Within a path candidates are
    visited best first (`priority(i)`, larger is better) and each joins the cluster of its most
    similar earlier candidate when that pair clears its threshold, so the first member of a
    cluster is its representative. Clusters are numbered in the order their representatives
    come in the whole review's priority order. `claims`: each candidate's `claim_tokens`, when the
    caller has them (the filter tokenises each claim once for clustering and fingerprints).
    """
    n = len(candidates)
    if n == 0:
        return [], []
    order_all = sorted(range(n), key=lambda i: (tuple(-p for p in priority(i)), i))
    by_path: dict[str | None, list[int]] = {}
    for i in order_all:
        by_path.setdefault(candidates[i].path, []).append(i)
    assigned = [-1] * n
    groups: list[list[int]] = []  # clusters as lists of global indices, best member first
    for members in by_path.values():
        if len(members) == 1:  # alone on its path: its own cluster (most paths of a review)
            groups.append(list(members))
            continue
        sub = [candidates[i] for i in members]  # already in priority order
        # When no pair may merge (far apart, or different rules) each is its own cluster, as the
        # loop below would find, without the text similarity, which a long history's cluster
        # pass would otherwise compute for every such path of every past review.
        if len(sub) <= _SMALL_PATH:
            if not _some_pair_may_merge(sub, settings):
                groups.extend([i] for i in members)
                continue
            need = _needs(sub, settings)
        else:
            need = _needs(sub, settings)
            if np.isnan(need[np.tril_indices(len(sub), -1)]).all():
                groups.extend([i] for i in members)
                continue
        sims = similarity_matrix(
            [f"{c.title}\n{c.body}" for c in sub],
            docs=None if claims is None else [claims[i] for i in members],
        )
        with np.errstate(invalid="ignore"):
            ok = sims >= need  # NaN (never merge) compares False
        local: list[int] = [-1] * len(sub)
        local_sources: list[set[str]] = []
        local_groups: list[list[int]] = []
        # plain lists: a review's path holds tens of candidates, where per-element numpy calls
        # cost more than the work (the filter clusters every past review before training)
        ok_rows: list[list[bool]] = ok.tolist()
        sim_rows: list[list[float]] = sims.tolist()
        for k in range(len(sub)):
            best = -1
            if k:
                ok_k, sim_k = ok_rows[k], sim_rows[k]
                cand = [j for j in range(k) if ok_k[j]]
                if cand:
                    # Most similar first; a cluster that already holds this candidate's source is
                    # skipped: one source (a pass, a rule, a tool) does not report one issue twice
                    # in a review, so a second remark from it is a different issue (unless it is
                    # a near copy on the same code, e.g. one pass repeating itself).
                    source = sub[k].source or "unknown"
                    cand.sort(key=lambda j: -sim_k[j])  # stable, as before
                    for j in cand:
                        home = local[j]
                        if sim_k[j] >= settings.copy_threshold or source not in local_sources[home]:
                            best = home
                            break
            if best == -1:
                local_groups.append([])
                local_sources.append(set())
                best = len(local_groups) - 1
            local_groups[best].append(members[k])
            local_sources[best].add(sub[k].source or "unknown")
            local[k] = best
        groups.extend(local_groups)
    rank = {i: r for r, i in enumerate(order_all)}
    groups.sort(key=lambda g: rank[g[0]])
    clusters: list[Cluster] = []
    for g in groups:
        cl = Cluster(id=f"{prefix}{len(clusters) + 1}", members=list(g))
        for i in g:
            cl.sources.add(candidates[i].source or "unknown")
            assigned[i] = len(clusters)
        clusters.append(cl)
    return clusters, assigned


# ---------------------------------------------------------------------------------------------
# Fingerprints: stable across pushes, comparable fuzzily.

FINGERPRINT_VERSION = "fp1"


def _h(text: str, n: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def simhash(text: str) -> int:
    """64-bit simhash of the normalised claim (tokens and token pairs): near texts, near hashes."""
    return simhashes([text])[0]


def _features(toks: list[str]) -> list[str]:
    return toks + [f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)]


@lru_cache(maxsize=1 << 16)
def _digest(feature: str) -> bytes:
    """A feature's 64-bit blake2b digest. Cached: words and word pairs repeat across reviews."""
    return hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()


def simhashes(texts: Sequence[str], *, docs: Sequence[list[str]] | None = None) -> list[int]:
    """simhash of each text, all in one set of array operations (the filter fingerprints every
    candidate of a review; per-text array calls cost more than the hashing). Each bit is the
    majority vote of the text's feature digests, bit 0 the most significant. `docs`: the texts'
    `tokens`, when the caller has them."""
    feats = [_features(toks) for toks in (docs if docs is not None else map(tokens, texts))]
    sizes = [len(f) for f in feats]
    out = [0] * len(texts)
    if not any(sizes):
        return out
    digests = b"".join(map(_digest, chain.from_iterable(feats)))
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(-1, 8), axis=1)
    votes = bits.astype(np.int32) * 2 - 1
    present = [i for i, n in enumerate(sizes) if n]
    starts = np.cumsum([0] + [sizes[i] for i in present[:-1]])
    sums = np.add.reduceat(votes, starts, axis=0)  # rows of texts with features are contiguous
    packed = np.packbits(sums > 0, axis=1)
    for row, i in enumerate(present):
        out[i] = int.from_bytes(packed[row].tobytes(), "big")
    return out


def _claim(candidate: Candidate) -> str:
    return f"{candidate.title}\n{candidate.body}"


def claim_tokens(candidate: Candidate) -> list[str]:
    """`tokens` of what the candidate claims (title and body): what clustering and fingerprints
    compare."""
    return tokens(_claim(candidate))


def _format(candidate: Candidate, claim: int) -> str:
    path = _h(candidate.path or "", 10)
    symbol = _h(candidate.symbol or "", 6)
    return f"{FINGERPRINT_VERSION}:{path}:{symbol}:{claim:016x}"


def fingerprint(candidate: Candidate) -> str:
    """`fp1:<path hash>:<symbol hash>:<claim simhash>`; the line number is deliberately absent."""
    return _format(candidate, simhash(_claim(candidate)))


def fingerprints(candidates: Sequence[Candidate], *, claims: Sequence[list[str]] | None = None) -> list[str]:
    """fingerprint() of each candidate, with the simhashes computed in one batch (`claims`: each
    candidate's `claim_tokens`, when the caller has them)."""
    hashes = simhashes([_claim(c) for c in candidates], docs=claims)
    return [_format(c, h) for c, h in zip(candidates, hashes, strict=True)]


def _parts(fp: str) -> tuple[str, str, int] | None:
    bits = fp.split(":")
    if len(bits) != 4 or bits[0] != FINGERPRINT_VERSION:
        return None
    try:
        return bits[1], bits[2], int(bits[3], 16)
    except ValueError:
        return None


class FingerprintIndex:
    """Known fingerprints (posted on this PR, or dismissed in this repo) for exact and fuzzy lookup."""

    def __init__(
        self, fingerprints: Sequence[str] | set[str] | frozenset[str] | list[str], *, max_distance: int = 8
    ) -> None:
        self.exact = set(fingerprints)
        self.max_distance = max_distance
        self.by_place: dict[tuple[str, str], list[int]] = {}
        for fp in self.exact:
            parts = _parts(fp)
            if parts is not None:
                self.by_place.setdefault((parts[0], parts[1]), []).append(parts[2])

    def __contains__(self, fp: str) -> bool:
        if fp in self.exact:
            return True
        parts = _parts(fp)
        if parts is None:
            return False
        return any(
            bin(parts[2] ^ other).count("1") <= self.max_distance
            for other in self.by_place.get((parts[0], parts[1]), ())
        )

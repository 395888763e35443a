"""Dedup: same issue in different words clusters; distinct issues and different paths do not."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from reviewbot.dedup import (
    FingerprintIndex,
    cluster_candidates,
    fingerprint,
    similarity_matrix,
    tokens,
)
from reviewbot.models import Candidate


def c(
    id: str,
    body: str,
    path: str | None = "svc/users.py",
    line: int | None = 10,
    source: str | None = None,
    **kw: object,
) -> Candidate:
    return Candidate(id=id, path=path, line=line, body=body, source=source or f"llm:{id}", **kw)  # type: ignore[arg-type]


def clusters_of(cands: list[Candidate]) -> list[int]:
    _, assigned = cluster_candidates(cands, priority=lambda i: (0.0,))
    return assigned


SQL_A = "get_user builds the SQL query with an f-string containing user_id: SQL injection."
SQL_B = "SQL injection risk: user_id is interpolated into the query string in get_user; use parameters."
NULL = "load_profile returns None when the cache misses, and the caller dereferences it without a check."


def test_clear_duplicate_pair_merges() -> None:
    assert len(set(clusters_of([c("a", SQL_A, source="llm:1"), c("b", SQL_B, line=12, source="llm:2")]))) == 1


def test_duplicates_without_paths_merge_on_text() -> None:
    assert (
        len(set(clusters_of([c("a", SQL_A, path=None, line=None), c("b", SQL_B, path=None, line=None)]))) == 1
    )


def test_clearly_distinct_pair_stays_apart() -> None:
    assert len(set(clusters_of([c("a", SQL_A), c("b", NULL, line=11)]))) == 2


def test_different_paths_never_merge() -> None:
    assert len(set(clusters_of([c("a", SQL_A), c("b", SQL_A, path="svc/other.py")]))) == 2


def test_same_text_far_apart_needs_more_similarity() -> None:
    far = clusters_of([c("a", SQL_A, line=10), c("b", SQL_B, line=400)])
    near = clusters_of([c("a", SQL_A, line=10), c("b", SQL_B, line=12)])
    assert len(set(near)) == 1
    assert len(set(far)) in (1, 2)  # allowed either way, but identical text far apart still merges:
    assert len(set(clusters_of([c("a", SQL_A, line=10), c("b", SQL_A, line=400)]))) == 1


def test_support_counts_distinct_sources_and_best_first() -> None:
    cands = [c("a", SQL_A, source="llm:1"), c("b", SQL_B, source="llm:2"), c("x", SQL_A, source="llm:1")]
    clusters, _ = cluster_candidates(cands, priority=lambda i: (1.0 if i == 1 else 0.0,))
    assert len(clusters) == 1
    assert clusters[0].support == 2
    assert clusters[0].representative == 1


def test_fingerprint_survives_line_shift_and_changes_with_path_or_claim() -> None:
    a = c("a", SQL_A, line=10, symbol="get_user")
    assert fingerprint(a) == fingerprint(replace(a, line=55, id="other"))
    assert fingerprint(a) != fingerprint(replace(a, path="svc/other.py"))
    assert fingerprint(a) != fingerprint(replace(a, body=NULL))


def test_fuzzy_fingerprint_match_for_reworded_claim_same_place() -> None:
    a = c("a", "Here get_user builds the SQL query with an f-string containing user_id: SQL injection.")
    b = c("b", "get_user builds the SQL query with an f-string containing user_id: SQL injection!")
    other_path = replace(b, path="svc/other.py")
    index = FingerprintIndex([fingerprint(a)])
    assert fingerprint(b) in index
    assert fingerprint(other_path) not in index
    assert fingerprint(c("n", NULL)) not in index
    assert "garbage" not in index


def test_one_source_does_not_report_one_issue_twice() -> None:
    """Two different remarks from the same pass stay apart even when their words overlap."""
    a = c("a", "get_user builds the SQL query with user_id: SQL injection.", source="llm:1")
    b = c("b", "get_user builds the SQL query without a LIMIT: slow on big tables.", source="llm:1")
    assert len(set(clusters_of([a, b]))) == 2
    assert len(set(clusters_of([a, c("copy", a.body, source="llm:1", line=11)]))) == 1


def test_similarity_matrix_is_tf_idf_cosine() -> None:
    """Hand-computed: idf = ln((1+n)/(1+df)) + 1, tf = 1 + ln(count), rows L2-normalised."""
    sims = similarity_matrix(["cache cache miss", "cache miss", "deadlock", "", "42 the"])
    n = 5
    idf_shared = math.log((1 + n) / (1 + 2)) + 1.0  # 'cache' and 'miss' occur in two texts
    a = np.array([1 + math.log(2), 1.0]) * idf_shared
    b = np.array([1.0, 1.0]) * idf_shared
    expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert sims[0, 1] == sims[1, 0] and abs(sims[0, 1] - expected) < 1e-12
    assert abs(sims[2, 2] - 1.0) < 1e-12 and sims[0, 2] == 0.0
    assert (sims[3] == 0).all() and (sims[4] == 0).all()  # no content tokens: similar to nothing
    assert similarity_matrix(["", "the 7"]).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert tokens("getUserById checks") == ["id:getuserbyid", "get", "user", "check"]

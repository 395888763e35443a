"""Dedup: same issue in different words clusters; distinct issues and different paths do not."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from reviewbot.core.domain import Candidate
from reviewbot.filter.dedup import (
    FingerprintIndex,
    claim_tokens,
    cluster_candidates,
    fingerprint,
    fingerprints,
    similarity_matrix,
    tokens,
)


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


def test_same_text_far_apart_is_two_places() -> None:
    """Issue #10: merge only when the same thing is said about the same code."""
    near = clusters_of([c("a", SQL_A, line=10), c("b", SQL_B, line=12)])
    assert len(set(near)) == 1
    assert len(set(clusters_of([c("a", SQL_A, line=10), c("b", SQL_B, line=400)]))) == 2
    assert len(set(clusters_of([c("a", SQL_A, line=10), c("b", SQL_A, line=400)]))) == 2


def _rule(rule_id: str, line: int, body: str, path: str = "svc/fetch.py") -> Candidate:
    return Candidate(
        id=f"rule:{rule_id}:{path}:{line}",
        path=path,
        line=line,
        body=body,
        title=body.split(".")[0],
        source=f"rule:{rule_id}",
        rule_id=rule_id,
        severity="high",
        category="bug",
    )


MUTABLE = (
    "Mutable default argument. The default is created once and shared by every call, so changes made "
    "in one call leak into the next; default to None and create the object inside the function."
)
TIMEOUT = (
    "HTTP call without a timeout: `requests` waits forever by default, so one stuck server hangs "
    "this worker. Pass `timeout=` (seconds)."
)


def test_two_rules_two_lines_apart_are_two_issues() -> None:
    """`def fetch(url, items=[])` and two lines below `requests.get(url)`: both findings stay."""
    cands = [_rule("py-mutable-default-arg", 1, MUTABLE), _rule("py-requests-no-timeout", 3, TIMEOUT)]
    assert len(set(clusters_of(cands))) == 2
    # even on the very same line, different rules say different things
    same_line = [_rule("py-mutable-default-arg", 3, MUTABLE), _rule("py-requests-no-timeout", 3, TIMEOUT)]
    assert len(set(clusters_of(same_line))) == 2


def test_llm_finding_on_the_timeout_line_is_not_a_duplicate_of_the_mutable_default() -> None:
    llm = c(
        "llm",
        "requests.get(url) has no timeout, so a slow server blocks fetch forever.",
        path="svc/fetch.py",
        line=3,
        source="llm",
    )
    cands = [_rule("py-mutable-default-arg", 1, MUTABLE), llm]
    assert len(set(clusters_of(cands))) == 2
    # the same issue from the rule and the LLM on the same line is one issue
    assert len(set(clusters_of([_rule("py-requests-no-timeout", 3, TIMEOUT), llm]))) == 1


def test_same_rule_at_several_places_is_one_comment_per_place() -> None:
    cands = [_rule("py-mutable-default-arg", line, MUTABLE) for line in (4, 9, 129)]
    assert len(set(clusters_of(cands))) == 3


def test_dedup_memory_is_per_path_not_the_whole_review() -> None:
    """5,000 candidates on 100 paths: a whole-review n x n matrix would need ~400 MB."""
    import tracemalloc

    cands = [
        c(f"{p}-{k}", f"{SQL_A} variant {k}", path=f"svc/f{p}.py", line=30 * k, source=f"llm:{k % 3}")
        for p in range(100)
        for k in range(50)
    ]
    tracemalloc.start()
    try:
        clusters, assigned = cluster_candidates(cands, priority=lambda i: (0.0,))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(assigned) == 5000 and len(clusters) == 5000  # 30 lines apart: every one its own place
    assert peak < 50 * 2**20, peak


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


def test_claim_tokens_given_by_the_caller_give_the_same_clusters_and_fingerprints() -> None:
    """The filter tokenises each claim once and hands the tokens to both; so must the answers be."""
    cands = [
        c("a", SQL_A, source="llm:1", symbol="get_user"),
        c("b", SQL_B, source="llm:2", line=11),
        c("n", NULL, source="llm:1", line=12),
        c("far", SQL_A, source="llm:3", line=40),
        c("other", SQL_B, path="svc/other.py"),
    ]
    claims = [claim_tokens(x) for x in cands]
    priority = lambda i: (float(i % 2),)  # noqa: E731
    assert cluster_candidates(cands, priority=priority, claims=claims) == cluster_candidates(
        cands, priority=priority
    )
    assert fingerprints(cands, claims=claims) == fingerprints(cands) == [fingerprint(x) for x in cands]


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


def test_filter_posts_both_rule_findings_and_every_place_of_one_rule() -> None:
    """Through the whole filter (shipped prior, default settings): nothing is 'duplicate of'."""
    from reviewbot.filter.acceptance import load_prior
    from reviewbot.filter.noise import FilterSettings, filter_review

    cands = [
        _rule("py-mutable-default-arg", 1, MUTABLE),
        _rule("py-requests-no-timeout", 3, TIMEOUT),
        _rule("py-mutable-default-arg", 128, MUTABLE),
    ]
    cands = [replace(x, repo="o/r", pr=1) for x in cands]
    decisions = filter_review(cands, model=load_prior(), settings=FilterSettings())
    assert [d.decision for d in decisions] == ["post", "post", "post"], [d.reason for d in decisions]
    assert not any("duplicate" in d.reason for d in decisions)

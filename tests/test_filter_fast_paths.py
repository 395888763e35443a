"""The filter's fast paths give what the plain algorithm they replace gives.

`reviewbot filter` prepares and trains on 100,000 history rows in seconds through shortcuts
(no text similarity where no pair may merge, ...); each is checked here against a slow, plain
version of the same rule on small random inputs, so a shortcut can never change a decision.
"""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewbot.commands.filter_cmd import InputError, _checked_candidate, parse_candidate
from reviewbot.core.domain import Candidate
from reviewbot.filter.dedup import (
    DedupSettings,
    _needs,
    _some_pair_may_merge,
    cluster_candidates,
    similarity_matrix,
)

TEXTS = [
    "get_user builds the SQL query with an f-string: SQL injection.",
    "SQL injection: user_id is interpolated into the query in get_user.",
    "load_profile returns None on a cache miss and the caller dereferences it.",
    "Typo in the docstring.",
    "Missing timeout on requests.get(url).",
]


def plain_clusters(cands: list[Candidate], priority: list[float], dedup: DedupSettings) -> list[list[int]]:
    """The documented algorithm, no shortcuts: per path, best first, every pair's similarity;
    each candidate joins the cluster of its most similar earlier one that clears the pair's
    threshold and does not already hold its source (unless a near copy)."""
    order = sorted(range(len(cands)), key=lambda i: (-priority[i], i))
    by_path: dict[str | None, list[int]] = {}
    for i in order:
        by_path.setdefault(cands[i].path, []).append(i)
    groups: list[list[int]] = []
    for members in by_path.values():
        sub = [cands[i] for i in members]
        sims = similarity_matrix([f"{c.title}\n{c.body}" for c in sub])
        need = _needs(sub, dedup)
        home: list[int] = []
        local: list[list[int]] = []
        sources: list[set[str]] = []
        for k in range(len(sub)):
            best = -1
            fits = [j for j in range(k) if not math.isnan(need[k, j]) and sims[k, j] >= need[k, j]]
            for j in sorted(fits, key=lambda j: -sims[k, j]):
                if sims[k, j] >= dedup.copy_threshold or sub[k].source not in sources[home[j]]:
                    best = home[j]
                    break
            if best == -1:
                local.append([])
                sources.append(set())
                best = len(local) - 1
            local[best].append(members[k])
            sources[best].add(sub[k].source)
            home.append(best)
        groups.extend(local)
    rank = {i: r for r, i in enumerate(order)}
    return sorted(groups, key=lambda g: rank[g[0]])


candidate = st.builds(
    lambda k, path, line, text, source, rule, prio: (
        Candidate(
            id=f"c{k}",
            path=path,
            line=line,
            body=TEXTS[text],
            source=f"rule:{rule}" if rule else source,
            rule_id=rule,
        ),
        prio,
    ),
    k=st.integers(0, 10**6),
    path=st.sampled_from(["a.py", "b.py", None]),
    line=st.one_of(st.none(), st.integers(1, 60)),
    text=st.integers(0, len(TEXTS) - 1),
    source=st.sampled_from(["llm:p1", "llm:p2", "tool"]),
    rule=st.sampled_from([None, None, None, "r1", "r2"]),
    prio=st.sampled_from([0.0, 0.5, 1.0]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(candidate, min_size=1, max_size=14))
def test_cluster_candidates_is_the_plain_algorithm(items: list[tuple[Candidate, float]]) -> None:
    cands = [c for c, _ in items]
    prio = [p for _, p in items]
    dedup = DedupSettings()
    clusters, assigned = cluster_candidates(cands, priority=lambda i: (prio[i],), settings=dedup)
    assert [cl.members for cl in clusters] == plain_clusters(cands, prio, dedup)
    assert all(clusters[assigned[i]].members.count(i) == 1 for i in range(len(cands)))


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.floats(-0.5, 1.5, allow_nan=False),
    st.sampled_from(["", "x", "owner/name", "confirmed", "refuted", "unsure", "high", "rule:r1"]),
    st.just([1]),
)
KEYS = st.sampled_from(
    ["id", "repo", "body", "pr", "path", "line", "end_line", "title", "severity", "category"]
    + ["confidence", "source", "rule_id", "symbol", "language", "hunk_size", "rank", "outcome"]
    + ["on_added_line", "quote_verified", "verdict", "verify_probability", "suggestion", "side"]
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=12), st.booleans())
def test_candidate_parse_fast_path_is_the_checked_one(obj: dict[str, object], valid_core: bool) -> None:
    if valid_core:
        obj = {**obj, "id": "c1", "repo": "o/r", "body": "text"}
    try:
        expected: Candidate | str = _checked_candidate(obj, 7)
    except InputError as exc:
        expected = str(exc)
    try:
        got: Candidate | str = parse_candidate(obj, 7)
    except InputError as exc:
        got = str(exc)
    assert got == expected


one_path_candidate = st.builds(
    lambda k, line, end, rule: Candidate(
        id=f"c{k}",
        path="a.py" if line is not None else None,
        line=line,
        end_line=None if line is None or end is None else line + end,
        body="x",
        source=f"rule:{rule}" if rule else "llm",
        rule_id=rule,
    ),
    k=st.integers(0, 10**6),
    line=st.one_of(st.none(), st.integers(1, 40)),
    end=st.one_of(st.none(), st.integers(0, 4)),
    rule=st.sampled_from([None, None, "r1", "r2"]),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(one_path_candidate, min_size=2, max_size=6))
def test_the_python_merge_precheck_is_needs(cands: list[Candidate]) -> None:
    need = _needs(cands, DedupSettings())
    below = need[np.tril_indices(len(cands), -1)]
    assert _some_pair_may_merge(cands, DedupSettings()) == bool((~np.isnan(below)).any())


def test_a_long_path_is_the_plain_algorithm_too() -> None:
    """More candidates on one path than the Python pre-check takes: the array check decides."""
    dedup = DedupSettings()
    far = [
        Candidate(id=f"f{k}", path="a.py", line=1 + 20 * k, body=TEXTS[k % 2], source="llm")
        for k in range(40)
    ]
    near = [
        Candidate(id=f"n{k}", path="a.py", line=1 + 20 * (k // 2), body=TEXTS[k % 2], source=f"llm:p{k % 3}")
        for k in range(40)
    ]
    prio = [float(k % 3) for k in range(40)]
    for cands in (far, near):
        clusters, _ = cluster_candidates(cands, priority=lambda i: (prio[i],), settings=dedup)
        assert [cl.members for cl in clusters] == plain_clusters(cands, prio, dedup)
    assert len(cluster_candidates(far, priority=lambda i: (0.0,))[0]) == 40
    assert len(cluster_candidates(near, priority=lambda i: (0.0,))[0]) < 40


def _outcome(load: object, line: str) -> tuple[str, object]:
    try:
        return "value", repr(load(line))  # type: ignore[operator]
    except json.JSONDecodeError as exc:
        return "error", str(exc)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet='{}[]":, 1-.eatrunlfNIx\ufeff\t\\', max_size=20),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=8,
        ).map(json.dumps),
    ),
    st.sampled_from(["", " ", "\t", "x", "}"]),
    st.sampled_from(["", " ", "\ufeff"]),
)
def test_jsonl_line_parse_is_json_loads(line: str, after: str, before: str) -> None:
    """parse_jsonl's `_loads` calls json's scanner directly: the same value or the same error."""
    from reviewbot.commands.filter_cmd import _loads

    text = before + line + after
    assert _outcome(_loads, text) == _outcome(json.loads, text)

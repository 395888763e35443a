"""A store filled with known findings and labels, shared by the stats and dashboard tests.

The numbers are built from a readable spec, so each test can state what it expects from the spec
rather than from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from reviewbot.app import records
from reviewbot.app.records import NewFinding, Tenant
from reviewbot.app.store import Store
from reviewbot.core.feedback import LabelEvent

try:
    from tests.fakes.live_server import LiveServer
except ImportError:  # tests/ run as a plain folder
    from fakes.live_server import LiveServer  # type: ignore[no-redef]

REPO = "acme/web"
OTHER = "acme/api"
INSTALLATION = 1
TENANT = Tenant(INSTALLATION, REPO)
OTHER_TENANT = Tenant(INSTALLATION, OTHER)


@dataclass(frozen=True)
class Spec:
    """n findings with the same shape; `labels` lists the label source of each (None = none)."""

    n: int
    pr: int
    week: str  # created_at date
    path: str
    category: str
    rule_id: str | None
    score: float
    decision: str = "post"
    explore: bool = False
    labels: tuple[str | None, ...] = ()


# acme/web, three weeks of reviews.
SPECS: list[Spec] = [
    # the LLM's bug findings: 7 accepted (reply/reaction/commit), 2 dismissed, 1 untouched
    Spec(
        10,
        1,
        "2026-01-05",
        "src/app/orders.py",
        "bug",
        None,
        0.8,
        labels=("reply+",) * 3 + ("reaction+",) * 2 + ("commit+",) * 2 + ("reply-",) * 2 + ("untouched",),
    ),
    # a noisy rule: 12 posted, 10 dismissed, 2 accepted (suggest-config should disable it)
    Spec(
        12,
        2,
        "2026-01-12",
        "src/legacy/views.py",
        "style",
        "py.bare-except",
        0.35,
        labels=("reaction-",) * 8 + ("thread~",) * 2 + ("reaction+",) * 2,
    ),
    # security findings, all accepted
    Spec(
        4,
        3,
        "2026-01-19",
        "src/app/auth.py",
        "security",
        "py.sql-injection",
        0.9,
        labels=("suggestion+",) * 4,
    ),
    # explored near-threshold comments: 1 accepted, 2 dismissed (counted apart)
    Spec(
        3,
        3,
        "2026-01-19",
        "src/app/auth.py",
        "bug",
        None,
        0.3,
        explore=True,
        labels=("reply+", "reply-", "reply-"),
    ),
    # suppressed candidates: 2 whose code changed later, 3 that did not, 1 never followed up
    Spec(
        6,
        3,
        "2026-01-19",
        "src/app/util.py",
        "maintainability",
        None,
        0.1,
        decision="suppress",
        labels=("followup+",) * 2 + ("followup-",) * 3 + (None,),
    ),
]

_LABEL = {
    "reply+": ("accepted", "reply", 1.0),
    "reply-": ("dismissed", "reply", 1.0),
    "reaction+": ("accepted", "reaction", 1.0),
    "reaction-": ("dismissed", "reaction", 1.0),
    "commit+": ("accepted", "commit", 1.0),
    "suggestion+": ("accepted", "suggestion", 1.0),
    "thread~": ("weak_dismissed", "thread", 0.5),
    "untouched": ("weak_dismissed", "untouched", 0.2),
    "followup+": ("accepted", "suppressed_followup", 1.0),
    "followup-": ("dismissed", "suppressed_followup", 1.0),
}


def add_finding(
    store: Store,
    *,
    repo: str,
    pr: int,
    created_at: str,
    path: str,
    category: str,
    rule_id: str | None,
    score: float,
    decision: str = "post",
    explore: bool = False,
    comment_id: int | None = None,
    head_sha: str = "a" * 40,
    line: int = 10,
    body: str = "finding",
    installation_id: int = INSTALLATION,
) -> int:
    """Store a finding (and its review, once per repo/pr/sha) through records; its id."""
    t = Tenant(installation_id, repo)
    review_id = records.claim_review(store, t, pr, head_sha, "b" * 40, created_at)
    row = NewFinding(
        pr=pr,
        path=path,
        line=line,
        side="RIGHT",
        title="t",
        body=body,
        severity="medium",
        category=category,
        source="rule" if rule_id else "llm",
        rule_id=rule_id,
        score=score,
        decision=decision,
        reason="r",
        fingerprint=f"fp-{pr}-{path}-{line}-{created_at}-{score}",
        explore=explore,
        comment_id=comment_id,
    )
    [fid] = records.add_findings(store, t, review_id, [row], created_at)
    return fid


def seed(store: Store) -> None:
    """Fill the store with SPECS for REPO, one finding in OTHER, and two model versions."""
    line = 1
    for spec in SPECS:
        labels = list(spec.labels) + [None] * (spec.n - len(spec.labels))
        for i in range(spec.n):
            fid = add_finding(
                store,
                repo=REPO,
                pr=spec.pr,
                created_at=f"{spec.week}T12:00:00+00:00",
                path=spec.path,
                category=spec.category,
                rule_id=spec.rule_id,
                score=spec.score + i * 0.001,
                decision=spec.decision,
                explore=spec.explore,
                line=line,
            )
            line += 1
            if labels[i] is None:
                continue
            label, source, weight = _LABEL[labels[i]]
            records.add_label(
                store,
                TENANT,
                LabelEvent(fid, label, source, {"i": i}, weight, f"{spec.week}T13:00:00+00:00"),  # type: ignore[arg-type]
            )
    add_finding(
        store,
        repo=OTHER,
        pr=9,
        created_at="2026-01-20T00:00:00+00:00",
        path="x.go",
        category="bug",
        rule_id=None,
        score=0.5,
    )
    for version, active, auc in ((1, 0, 0.61), (2, 1, 0.74)):
        stored = records.add_model_version(
            store,
            TENANT,
            params="{}",
            metrics={"auc": auc},
            n_labels=20 * version,
            activate=bool(active),
            now="2026-01-20T00:00:00+00:00",
        )
        assert stored == version


@contextmanager
def serve(app: object) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    with LiveServer(app) as server:
        yield server.url

"""The one owner of the SQL for reviews, findings, feedback and model versions.

Every read and write of those tables (and of `reaction_polls`, the feedback poll's ETags) goes
through this module, and every function takes a `Tenant` (installation + repo): tenant scoping
lives here and nowhere else. A row belongs to an installation only when its `installation_id`
matches exactly; a NULL matches nobody, so a row written without an installation is never read
back into a tenant's review, model or stats.

Functions do not lock: callers that share the store's connection across threads hold their lock
around a call. Functions that write several rows open their own transaction; the single-statement
ones run inside whatever transaction the caller holds (`Store.transaction`).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reviewbot.core.domain import Decision
from reviewbot.core.feedback import LabelEvent, resolve_outcome, silences
from reviewbot.filter.signals import persisted_signals
from reviewbot.review.render import suggestion_block

if TYPE_CHECKING:  # annotations only: the caller opens the store (sqlite-utils loads slowly)
    from reviewbot.app.store import Store


@dataclass(frozen=True, slots=True, order=True)
class Tenant:
    """A repository as one installation sees it: the key of every read and write here."""

    installation_id: int
    repo: str

    @property
    def scope(self) -> str:
        """The model_versions scope of the repo's own model."""
        return f"repo:{self.repo}"


@dataclass(frozen=True, slots=True, order=True)
class OrgTenant:
    """An organisation's repos as one installation sees them: the owner of the org model."""

    installation_id: int
    org: str

    @property
    def scope(self) -> str:
        """The model_versions scope of the org model (the prior of the org's new repos)."""
        return f"org:{self.org}"


# --------------------------------------------------------------------------------- reviews


def review_state(store: Store, t: Tenant, pr: int, head_sha: str) -> tuple[int, str] | None:
    """(id, state) of the tenant's review row for this head, or None."""
    row = store.conn.execute(
        "SELECT id, state FROM reviews WHERE installation_id = ? AND repo = ? AND pr = ? AND head_sha = ?",
        (t.installation_id, t.repo, pr, head_sha),
    ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def claim_review(store: Store, t: Tenant, pr: int, head_sha: str, base_sha: str, now: str) -> int:
    """The reviews row for this head, created 'pending' BEFORE anything is posted; its id."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO reviews (installation_id, repo, pr, head_sha, base_sha, state, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'pending', ?) ON CONFLICT(repo, pr, head_sha) DO NOTHING",
            (t.installation_id, t.repo, pr, head_sha, base_sha, now),
        )
        row = conn.execute(
            "SELECT id, installation_id FROM reviews WHERE repo = ? AND pr = ? AND head_sha = ?",
            (t.repo, pr, head_sha),
        ).fetchone()
        if row[1] != t.installation_id:
            # The repo changed hands (transferred) with its PRs: the head's row is the new
            # installation's now; the findings stored under the old one stay the old one's.
            conn.execute(
                "UPDATE reviews SET installation_id = ?, state = 'pending', base_sha = ? WHERE id = ?",
                (t.installation_id, base_sha, row[0]),
            )
    return int(row[0])


def last_posted_head(store: Store, t: Tenant, pr: int, *, other_than: str) -> str | None:
    """The head of this PR's latest posted review other than `other_than`."""
    row = store.conn.execute(
        "SELECT head_sha FROM reviews WHERE installation_id = ? AND repo = ? AND pr = ? "
        "AND state = 'posted' AND head_sha != ? ORDER BY posted_at DESC, id DESC LIMIT 1",
        (t.installation_id, t.repo, pr, other_than),
    ).fetchone()
    return str(row[0]) if row else None


def review_check_run(store: Store, t: Tenant, review_id: int) -> int | None:
    """The check run the review recorded, or None."""
    row = store.conn.execute(
        "SELECT check_run_id FROM reviews WHERE id = ? AND installation_id = ? AND repo = ?",
        (review_id, t.installation_id, t.repo),
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else None


def stale_pending_reviews(store: Store, t: Tenant, pr: int, head_sha: str) -> list[tuple[int, str]]:
    """(id, head_sha) of the PR's reviews still 'pending' for another head: a run that died
    between posting and recording, whose head moved on before any retry could record it."""
    return [
        (int(r[0]), str(r[1]))
        for r in store.conn.execute(
            "SELECT id, head_sha FROM reviews WHERE installation_id = ? AND repo = ? AND pr = ? "
            "AND state = 'pending' AND head_sha != ?",
            (t.installation_id, t.repo, pr, head_sha),
        )
    ]


def set_review_state(store: Store, t: Tenant, review_id: int, state: str) -> None:
    """Move a still-pending review to `state` (e.g. 'failed' when its head moved on)."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE reviews SET state = ? WHERE id = ? AND installation_id = ? AND repo = ? "
            "AND state = 'pending'",
            (state, review_id, t.installation_id, t.repo),
        )


@dataclass(frozen=True, slots=True)
class NewFinding:
    """A findings row to insert: a filter decision, or a comment recovered from GitHub."""

    pr: int
    path: str | None
    line: int | None
    side: str | None
    body: str
    decision: str
    reason: str
    fingerprint: str
    end_line: int | None = None
    title: str | None = None
    severity: str | None = None
    category: str | None = None
    source: str | None = None
    rule_id: str | None = None
    symbol: str | None = None
    score: float | None = None
    cluster: str | None = None
    explore: bool = False
    comment_id: int | None = None
    features: str = "{}"

    @classmethod
    def from_decision(cls, d: Decision, *, pr: int, comment_id: int | None) -> NewFinding:
        """The row of a filter decision; explore is kept only on posted ones (a suppressed
        candidate was not explored), and with it the features the acceptance model saw."""
        c = d.candidate
        features: dict[str, object] = {
            "confidence": c.confidence,
            "hunk_size": c.hunk_size,
            "language": c.language,
            "support": 1,
        }
        features.update(persisted_signals(c, d.review_size))  # what the acceptance model saw
        return cls(
            pr=pr,
            path=c.path,
            line=c.line,
            end_line=c.end_line,
            side=c.side,
            title=c.title,
            # the suggestion block as posted: feedback reads it back to label 'suggestion'
            body=c.body if c.suggestion is None else f"{c.body}\n\n{suggestion_block(c.suggestion)}",
            severity=d.severity,
            category=d.category,
            source=c.source,
            rule_id=c.rule_id,
            symbol=c.symbol,
            score=d.score,
            decision=d.decision,
            reason=d.reason,
            cluster=d.cluster,
            fingerprint=d.fingerprint,
            explore=bool(d.explore and d.decision == "post"),
            comment_id=comment_id if d.decision == "post" else None,
            features=json.dumps({k: v for k, v in features.items() if v is not None}, sort_keys=True),
        )


# Where a finding is and what it says: stored with it, read back for training.
_CONTENT_COLUMNS = (
    "path",
    "line",
    "end_line",
    "side",
    "title",
    "body",
    "severity",
    "category",
    "source",
    "rule_id",
    "symbol",
)
_FINDING_COLUMNS = (
    "review_id",
    "installation_id",
    "repo",
    "pr",
    *_CONTENT_COLUMNS,
    "score",
    "decision",
    "reason",
    "cluster",
    "fingerprint",
    "explore",
    "github_comment_id",
    "features",
    "created_at",
)
_FINDING_INSERT = (
    f"INSERT INTO findings ({', '.join(_FINDING_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _FINDING_COLUMNS)})"
)


def _insert_finding(conn: sqlite3.Connection, t: Tenant, review_id: int, f: NewFinding, now: str) -> int:
    cur = conn.execute(
        _FINDING_INSERT,
        (
            review_id,
            t.installation_id,
            t.repo,
            f.pr,
            f.path,
            f.line,
            f.end_line,
            f.side,
            f.title,
            f.body,
            f.severity,
            f.category,
            f.source,
            f.rule_id,
            f.symbol,
            f.score,
            f.decision,
            f.reason,
            f.cluster,
            f.fingerprint,
            int(f.explore),
            f.comment_id,
            f.features,
            now,
        ),
    )
    return int(cur.lastrowid or 0)


def add_findings(
    store: Store, t: Tenant, review_id: int, findings: Iterable[NewFinding], now: str
) -> list[int]:
    """Insert findings of one review (one transaction); their ids."""
    with store.transaction() as conn:
        return [_insert_finding(conn, t, review_id, f, now) for f in findings]


def finish_review(
    store: Store,
    t: Tenant,
    review_id: int,
    *,
    github_review_id: int | None,
    check_run_id: int | None,
    funnel: Mapping[str, Any],
    usage: Mapping[str, Any],
    findings: Iterable[NewFinding],
    now: str,
) -> None:
    """The review is on GitHub (or, with no `github_review_id`, was quiet: nothing to post on a
    push): mark the head reviewed and store every decision, in one transaction."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE reviews SET state = 'posted', github_review_id = ?, check_run_id = ?, funnel = ?, "
            "usage = ?, posted_at = ? WHERE id = ? AND installation_id = ? AND repo = ?",
            (
                github_review_id,
                check_run_id,
                json.dumps(dict(funnel), sort_keys=True),
                json.dumps(dict(usage), sort_keys=True),
                now,
                review_id,
                t.installation_id,
                t.repo,
            ),
        )
        for f in findings:
            _insert_finding(conn, t, review_id, f, now)


def record_recovered_review(
    store: Store,
    t: Tenant,
    review_id: int,
    *,
    github_review_id: int,
    check_run_id: int | None,
    comments: Sequence[NewFinding],
    now: str,
) -> None:
    """A review found already on GitHub (a crash after posting): mark it posted and store its
    comments not stored yet (by comment id), in one transaction."""
    with store.transaction() as conn:
        conn.execute(
            "UPDATE reviews SET state = 'posted', github_review_id = ?, funnel = ?, posted_at = ?, "
            "check_run_id = COALESCE(check_run_id, ?) WHERE id = ? AND installation_id = ? AND repo = ?",
            (
                github_review_id,
                json.dumps({"recovered": True, "posted": len(comments)}),
                now,
                check_run_id,
                review_id,
                t.installation_id,
                t.repo,
            ),
        )
        known = {
            r[0]
            for r in conn.execute(
                "SELECT github_comment_id FROM findings WHERE review_id = ? AND installation_id = ? "
                "AND github_comment_id IS NOT NULL",
                (review_id, t.installation_id),
            )
        }
        for f in comments:
            if f.comment_id not in known:
                _insert_finding(conn, t, review_id, f, now)


def _usages(rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (raw,) in rows:
        try:
            usage = json.loads(raw or "{}")
        except (TypeError, ValueError):
            continue
        if isinstance(usage, dict):
            out.append(usage)
    return out


def posted_usages(store: Store, t: Tenant) -> list[dict[str, Any]]:
    """The LLM usage (tokens, model, cost) recorded with each of the tenant's posted reviews."""
    return _usages(
        store.conn.execute(
            "SELECT usage FROM reviews WHERE installation_id = ? AND repo = ? AND state = 'posted'",
            (t.installation_id, t.repo),
        )
    )


def installation_usages_since(store: Store, installation_id: int, since: str) -> list[dict[str, Any]]:
    """The LLM usage of every review the installation posted since `since` (all its repos: the
    operator's daily cap is per installation)."""
    return _usages(
        store.conn.execute(
            "SELECT usage FROM reviews WHERE installation_id = ? AND posted_at >= ?", (installation_id, since)
        )
    )


# --------------------------------------------------------------------------------- findings


def posted_fingerprints(store: Store, t: Tenant, pr: int) -> set[str]:
    """Fingerprints of what the bot posted on this PR (never post the same finding twice)."""
    return {
        r[0]
        for r in store.conn.execute(
            "SELECT fingerprint FROM findings WHERE installation_id = ? AND repo = ? AND pr = ? "
            "AND decision = 'post'",
            (t.installation_id, t.repo, pr),
        )
    }


def dismissed_fingerprints(store: Store, t: Tenant) -> set[str]:
    """Fingerprints of the tenant's posted findings the team dismissed, by the one dismissal
    policy (`feedback.silences`, docs/feedback.md): the filter does not raise them again."""
    labels = labels_by_finding(store, t)
    return {
        fp
        for fid, fp in store.conn.execute(
            "SELECT id, fingerprint FROM findings "
            "WHERE installation_id = ? AND repo = ? AND decision = 'post'",
            (t.installation_id, t.repo),
        )
        if silences(resolve_outcome([lb.as_vote() for lb in labels.get(fid, [])], include_untouched=False))
    }


@dataclass(frozen=True, slots=True)
class FindingRef:
    """What the feedback stages need of a stored finding (and the head it was reviewed at)."""

    id: int
    pr: int
    path: str | None
    line: int | None
    end_line: int | None
    side: str | None
    body: str
    head_sha: str
    decision: str
    comment_id: int | None


_REF_SELECT = (
    "SELECT f.id, f.pr, f.path, f.line, f.end_line, f.side, f.body, r.head_sha, f.decision, "
    "f.github_comment_id FROM findings f JOIN reviews r ON r.id = f.review_id "
    "WHERE f.installation_id = ? AND f.repo = ?"
)


def _refs(store: Store, t: Tenant, where: str, args: Sequence[object]) -> list[FindingRef]:
    rows = store.conn.execute(f"{_REF_SELECT} {where} ORDER BY f.id", (t.installation_id, t.repo, *args))
    return [FindingRef(*r) for r in rows]


def finding_by_comment(store: Store, t: Tenant, comment_id: int) -> FindingRef | None:
    """The finding the bot posted as this comment, or None."""
    found = _refs(store, t, "AND f.github_comment_id = ?", (comment_id,))
    return found[0] if found else None


def recent_comments(store: Store, t: Tenant, *, since: str) -> list[FindingRef]:
    """The tenant's posted comments created at or after `since` (the reaction poll's window)."""
    return _refs(
        store,
        t,
        "AND f.decision = 'post' AND f.github_comment_id IS NOT NULL AND f.created_at >= ?",
        (since,),
    )


def pr_findings(store: Store, t: Tenant, pr: int) -> list[FindingRef]:
    """Every stored finding of the PR, posted and suppressed."""
    return _refs(store, t, "AND f.pr = ?", (pr,))


def posted_finding_rows(store: Store, t: Tenant) -> list[dict[str, Any]]:
    """The tenant's posted findings as column -> value (for training)."""
    cols = (
        "id",
        *_CONTENT_COLUMNS,
        "repo",
        "pr",
        "features",
    )
    rows = store.conn.execute(
        f"SELECT {', '.join(cols)} FROM findings WHERE installation_id = ? AND repo = ? "
        "AND decision = 'post' ORDER BY id",
        (t.installation_id, t.repo),
    )
    return [dict(zip(cols, r, strict=True)) for r in rows]


@dataclass(frozen=True, slots=True)
class KindRow:
    """A posted finding's kind columns and its labels: what learned suppression reads."""

    id: int
    pr: int
    rule_id: str | None
    source: str | None
    category: str | None
    title: str
    body: str
    labels: tuple[Label, ...]


def labelled_kinds(store: Store, t: Tenant) -> list[KindRow]:
    """The tenant's posted findings that carry at least one label, with those labels."""
    labels = labels_by_finding(store, t)
    if not labels:
        return []
    rows = store.conn.execute(
        "SELECT id, pr, rule_id, source, category, title, body FROM findings "
        "WHERE installation_id = ? AND repo = ? AND decision = 'post' ORDER BY id",
        (t.installation_id, t.repo),
    )
    return [
        KindRow(int(i), int(pr), rule, src, cat, title or "", body or "", tuple(labels[int(i)]))
        for i, pr, rule, src, cat, title, body in rows
        if int(i) in labels
    ]


@dataclass(frozen=True, slots=True)
class StatsFinding:
    id: int
    pr: int
    path: str | None
    category: str | None
    rule_id: str | None
    source: str | None
    score: float | None
    decision: str
    explore: bool
    created_at: str
    fingerprint: str


def stats_findings(store: Store, t: Tenant) -> list[StatsFinding]:
    """Every finding of the tenant, oldest first (for the dashboard and `reviewbot stats`)."""
    rows = store.conn.execute(
        "SELECT id, pr, path, category, rule_id, source, score, decision, explore, created_at, fingerprint "
        "FROM findings WHERE installation_id = ? AND repo = ? ORDER BY created_at, id",
        (t.installation_id, t.repo),
    )
    return [
        StatsFinding(
            id=r[0],
            pr=r[1],
            path=r[2],
            category=r[3],
            rule_id=r[4],
            source=r[5],
            score=r[6],
            decision=r[7],
            explore=bool(r[8]),
            created_at=r[9],
            fingerprint=r[10],
        )
        for r in rows
    ]


# ------------------------------------------------------------------------- tenants listed


def tenants(store: Store) -> list[Tenant]:
    """Every (installation, repo) with findings or an installed repository, sorted by repo."""
    rows = store.conn.execute(
        "SELECT installation_id, repo FROM findings WHERE installation_id IS NOT NULL "
        "UNION SELECT installation_id, full_name FROM repositories"
    )
    return sorted({Tenant(int(i), str(r)) for i, r in rows}, key=lambda t: (t.repo, t.installation_id))


def tenant_of(store: Store, repo: str) -> Tenant | None:
    """The installation a repo name belongs to now: its installed repository, else the
    installation that reviewed it last (a database copied off a server, with no installs)."""
    row = (
        store.conn.execute("SELECT installation_id FROM repositories WHERE full_name = ?", (repo,)).fetchone()
        or store.conn.execute(
            "SELECT installation_id FROM findings WHERE repo = ? AND installation_id IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (repo,),
        ).fetchone()
    )
    return Tenant(int(row[0]), repo) if row else None


def tenants_with_recent_comments(store: Store, *, since: str) -> list[Tenant]:
    """Tenants with bot comments posted at or after `since` (whose reactions are polled)."""
    rows = store.conn.execute(
        "SELECT DISTINCT installation_id, repo FROM findings WHERE decision = 'post' "
        "AND github_comment_id IS NOT NULL AND installation_id IS NOT NULL AND created_at >= ?",
        (since,),
    )
    return sorted((Tenant(int(i), str(r)) for i, r in rows), key=lambda t: (t.repo, t.installation_id))


def tenants_with_labels(store: Store) -> list[Tenant]:
    """Tenants with any feedback (candidates for a retrain)."""
    rows = store.conn.execute(
        "SELECT DISTINCT installation_id, repo FROM feedback WHERE installation_id IS NOT NULL"
    )
    return sorted((Tenant(int(i), str(r)) for i, r in rows), key=lambda t: (t.repo, t.installation_id))


# --------------------------------------------------------------------------------- feedback


@dataclass(frozen=True, slots=True)
class Label:
    id: int
    label: str
    source: str
    weight: float
    at: str
    provenance: dict[str, Any]

    def as_vote(self) -> tuple[str, str, float, str]:
        """The (label, source, weight, at) row `feedback.resolve_outcome` combines."""
        return (self.label, self.source, self.weight, self.at)


def _prov(provenance: Mapping[str, object]) -> str:
    return json.dumps(dict(provenance), sort_keys=True, separators=(",", ":"))


def add_label(store: Store, t: Tenant, ev: LabelEvent) -> bool:
    """Insert a label on one of the tenant's findings; the same (finding, source, provenance)
    twice is a no-op, and a finding of another tenant is refused. True if new."""
    cur = store.conn.execute(
        "INSERT OR IGNORE INTO feedback (finding_id, installation_id, repo, label, source, provenance, "
        "weight, at) SELECT id, installation_id, repo, ?, ?, ?, ?, ? FROM findings "
        "WHERE id = ? AND installation_id = ? AND repo = ?",
        (
            ev.label,
            ev.source,
            _prov(ev.provenance),
            ev.weight,
            ev.at,
            ev.finding_id,
            t.installation_id,
            t.repo,
        ),
    )
    return cur.rowcount > 0


def remove_labels(store: Store, t: Tenant, finding_id: int, source: str, **match: object) -> int:
    """Delete a finding's labels from `source` whose provenance has the given key=value pairs."""
    sql = "DELETE FROM feedback WHERE installation_id = ? AND repo = ? AND finding_id = ? AND source = ?"
    args: list[object] = [t.installation_id, t.repo, finding_id, source]
    for key, value in match.items():
        if not key.isidentifier():
            raise ValueError(f"not a provenance key: {key!r}")
        if store.is_postgres:  # compared as JSON values, as SQLite's json_extract compares them
            sql += f" AND (provenance::jsonb -> '{key}') = ?::jsonb"
            args.append(json.dumps(value))
        else:
            sql += f" AND json_extract(provenance, '$.{key}') = ?"
            args.append(value)
    return store.conn.execute(sql, args).rowcount


def delete_label(store: Store, t: Tenant, label_id: int) -> None:
    store.conn.execute(
        "DELETE FROM feedback WHERE id = ? AND installation_id = ? AND repo = ?",
        (label_id, t.installation_id, t.repo),
    )


def finding_labels(store: Store, t: Tenant, finding_id: int, *, source: str | None = None) -> list[Label]:
    """One finding's labels (from one source, when given), oldest first."""
    sql = (
        "SELECT id, label, source, weight, at, provenance FROM feedback "
        "WHERE installation_id = ? AND repo = ? AND finding_id = ?"
    )
    args: list[object] = [t.installation_id, t.repo, finding_id]
    if source is not None:
        sql += " AND source = ?"
        args.append(source)
    return [_label(r) for r in store.conn.execute(sql + " ORDER BY id", args)]


def labels_by_finding(store: Store, t: Tenant) -> dict[int, list[Label]]:
    """Every label of the tenant, grouped by finding id."""
    out: dict[int, list[Label]] = defaultdict(list)
    for r in store.conn.execute(
        "SELECT id, label, source, weight, at, provenance, finding_id FROM feedback "
        "WHERE installation_id = ? AND repo = ? ORDER BY id",
        (t.installation_id, t.repo),
    ):
        out[int(r[6])].append(_label(r[:6]))
    return dict(out)


def _label(r: Sequence[Any]) -> Label:
    return Label(int(r[0]), str(r[1]), str(r[2]), float(r[3]), str(r[4]), json.loads(r[5] or "{}"))


def count_labels_after(store: Store, t: Tenant, after_id: int) -> int:
    """Training labels (not suppressed follow-ups) with an id above `after_id`."""
    row = store.conn.execute(
        "SELECT COUNT(*) FROM feedback WHERE installation_id = ? AND repo = ? AND id > ? "
        "AND source != 'suppressed_followup'",
        (t.installation_id, t.repo, after_id),
    ).fetchone()
    return int(row[0])


def first_label_at(store: Store, t: Tenant, after_id: int = 0) -> str | None:
    """When the oldest training label with an id above `after_id` arrived (None: there is none)."""
    row = store.conn.execute(
        "SELECT MIN(at) FROM feedback WHERE installation_id = ? AND repo = ? AND id > ? "
        "AND source != 'suppressed_followup'",
        (t.installation_id, t.repo, after_id),
    ).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def poll_etag(store: Store, t: Tenant, comment_id: int) -> str | None:
    """The ETag of the last reaction poll of a bot comment."""
    row = store.conn.execute(
        "SELECT etag FROM reaction_polls WHERE github_comment_id = ? AND repo = ?", (comment_id, t.repo)
    ).fetchone()
    return str(row[0]) if row and row[0] is not None else None


def save_poll(store: Store, t: Tenant, comment_id: int, *, etag: str | None, status: int, now: str) -> None:
    """Remember a reaction poll (a 304 keeps the previous ETag)."""
    store.conn.execute(
        "INSERT INTO reaction_polls (github_comment_id, repo, etag, last_status, polled_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(github_comment_id) DO UPDATE SET repo = excluded.repo, "
        "etag = COALESCE(excluded.etag, reaction_polls.etag), last_status = excluded.last_status, "
        "polled_at = excluded.polled_at",
        (comment_id, t.repo, etag, status, now),
    )


# ---------------------------------------------------------------------------- model versions


@dataclass(frozen=True, slots=True)
class ModelVersion:
    version: int
    params: str
    metrics: dict[str, Any]
    n_labels: int
    active: bool
    created_at: str


def model_versions(store: Store, t: Tenant | OrgTenant) -> list[ModelVersion]:
    """The tenant's repo model versions, oldest first."""
    rows = store.conn.execute(
        "SELECT version, params, metrics, n_labels, active, created_at FROM model_versions "
        "WHERE installation_id = ? AND scope = ? ORDER BY version",
        (t.installation_id, t.scope),
    )
    return [ModelVersion(int(v), p, json.loads(m or "{}"), int(n), bool(a), c) for v, p, m, n, a, c in rows]


def active_model_version(store: Store, t: Tenant | OrgTenant) -> ModelVersion | None:
    """The tenant's active repo model version (None: the prior is in force)."""
    row = store.conn.execute(
        "SELECT version, params, metrics, n_labels, active, created_at FROM model_versions "
        "WHERE installation_id = ? AND scope = ? AND active = 1 ORDER BY version DESC LIMIT 1",
        (t.installation_id, t.scope),
    ).fetchone()
    if row is None:
        return None
    v, p, m, n, a, c = row
    return ModelVersion(int(v), p, json.loads(m or "{}"), int(n), bool(a), c)


def active_model_params(store: Store, t: Tenant | OrgTenant) -> str | None:
    """The JSON parameters of the tenant's active repo model, or None (use the prior)."""
    row = store.conn.execute(
        "SELECT params FROM model_versions WHERE installation_id = ? AND scope = ? AND active = 1 "
        "ORDER BY version DESC LIMIT 1",
        (t.installation_id, t.scope),
    ).fetchone()
    return str(row[0]) if row else None


def add_model_version(
    store: Store,
    t: Tenant | OrgTenant,
    *,
    params: str,
    metrics: Mapping[str, Any],
    n_labels: int,
    activate: bool,
    now: str,
) -> int:
    """Store the next version of the tenant's model (activating it: the only active one); its number."""
    with store.transaction() as conn:
        row = conn.execute("SELECT MAX(version) FROM model_versions WHERE scope = ?", (t.scope,)).fetchone()
        version = int(row[0] or 0) + 1
        if activate:
            conn.execute(
                "UPDATE model_versions SET active = 0 WHERE installation_id = ? AND scope = ?",
                (t.installation_id, t.scope),
            )
        conn.execute(
            "INSERT INTO model_versions (installation_id, scope, version, params, metrics, n_labels, active, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                t.installation_id,
                t.scope,
                version,
                params,
                json.dumps(dict(metrics)),
                n_labels,
                int(activate),
                now,
            ),
        )
    return version


def activate_model_version(store: Store, t: Tenant | OrgTenant, version: int) -> bool:
    """Make `version` the tenant's only active model (a manual rollback); False when it has none such."""
    with store.transaction() as conn:
        hit = conn.execute(
            "SELECT 1 FROM model_versions WHERE installation_id = ? AND scope = ? AND version = ?",
            (t.installation_id, t.scope, version),
        ).fetchone()
        if hit is None:
            return False
        conn.execute(
            "UPDATE model_versions SET active = CASE WHEN version = ? THEN 1 ELSE 0 END "
            "WHERE installation_id = ? AND scope = ?",
            (version, t.installation_id, t.scope),
        )
    return True


# ------------------------------------------------------------------------------- uninstall


def reviewed_repos(conn: sqlite3.Connection, installation_id: int) -> set[str]:
    """Every repo the installation has reviews of (an uninstall forgets them all)."""
    rows = conn.execute("SELECT DISTINCT repo FROM reviews WHERE installation_id = ?", (installation_id,))
    return {str(r[0]) for r in rows}


def forget_installation(
    conn: sqlite3.Connection, installation_id: int, repos: Sequence[str], accounts: Sequence[str]
) -> None:
    """Delete an uninstalled installation's reviews, findings, labels, polls and models: by its id,
    and by its repositories' names and accounts' scopes (rows written without an installation id
    still belong to the tenant). Runs inside the caller's transaction (worker's uninstall)."""
    marks = ", ".join("?" for _ in repos) or "NULL"
    for table in ("feedback", "findings", "reviews"):
        conn.execute(
            f"DELETE FROM {table} WHERE installation_id = ? OR repo IN ({marks})", (installation_id, *repos)
        )
    conn.execute(f"DELETE FROM reaction_polls WHERE repo IN ({marks})", tuple(repos))
    scopes = [f"repo:{r}" for r in repos] + [f"org:{a}" for a in accounts]
    scope_marks = ", ".join("?" for _ in scopes) or "NULL"
    conn.execute(
        f"DELETE FROM model_versions WHERE installation_id = ? OR scope IN ({scope_marks})",
        (installation_id, *scopes),
    )

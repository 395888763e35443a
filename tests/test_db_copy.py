"""`reviewbot db copy`: an existing SQLite database moved to PostgreSQL (and to SQLite) row for
row, ids kept, the destination's id sequences past them, a non-empty destination refused."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from reviewbot.app import records
from reviewbot.app.queue import JobQueue
from reviewbot.app.records import NewFinding, Tenant
from reviewbot.app.store import COPIED_TABLES, Store, columns
from reviewbot.cli import app
from reviewbot.core.feedback import LabelEvent
from tests.test_records import D

NOW = "2026-03-02T09:00:00+00:00"
T = Tenant(5_000_000_001, "acme/shop")  # GitHub ids outgrow 32 bits


def _seed(store: Store) -> None:
    store.conn.execute(
        "INSERT INTO installations (id, account, created_at) VALUES (?, 'acme', ?)", (T.installation_id, NOW)
    )
    store.conn.execute(
        "INSERT INTO repositories (id, installation_id, full_name, added_at) VALUES (?, ?, ?, ?)",
        (7_000_000_001, T.installation_id, T.repo, NOW),
    )
    queue = JobQueue(store)
    for pr in (1, 2, 3):
        queue.enqueue(
            "review",
            {"pr": pr, "note": "100% ünïcode"},
            installation_id=T.installation_id,
            repo=T.repo,
            pr=pr,
        )
    queue.complete(queue.claim("w"))  # type: ignore[arg-type]
    store.conn.execute(
        "INSERT INTO deliveries (id, event, action, installation_id, repo, received_at, job_id) "
        "VALUES ('d-1', 'pull_request', 'opened', ?, ?, ?, 1)",
        (T.installation_id, T.repo, NOW),
    )
    review_id = records.claim_review(store, T, 1, "abc", "base", NOW)
    rows = [
        NewFinding.from_decision(d, pr=1, comment_id=9_000_000_000 + i)
        for i, d in enumerate([D("p1", "post", 0.9), D("s1", "suppress", 0.125)])
    ]
    ids = records.add_findings(store, T, review_id, rows, NOW)
    ev = LabelEvent(ids[0], "accepted", "reaction", {"user": "u", "reaction_id": 3}, 0.5, NOW)  # type: ignore[arg-type]
    assert records.add_label(store, T, ev)
    records.add_model_version(
        store, T, params=json.dumps({"w": [0.25]}), metrics={}, n_labels=1, activate=True, now=NOW
    )
    store.conn.execute(
        "INSERT INTO reaction_polls (github_comment_id, repo, etag, last_status, polled_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (9_000_000_000, T.repo, 'W/"e"', 200, NOW),
    )


def _dump(store: Store) -> dict[str, list[tuple]]:
    out = {}
    for table in COPIED_TABLES:
        cols = sorted(columns(store, table))
        out[table] = [
            tuple(r) for r in store.conn.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1")
        ]
    return out


def test_copy_moves_every_row_and_keeps_ids(tmp_path: Path, database: str) -> None:
    old = tmp_path / "old.db"
    src = Store.open(old)
    _seed(src)
    before = _dump(src)
    src.close()
    assert all(before[t] for t in COPIED_TABLES), "the seed fills every copied table"

    result = CliRunner().invoke(app, ["db", "copy", "--from", f"sqlite:///{old}", "--to", database])
    assert result.exit_code == 0, result.output
    assert "copied" in result.output and "jobs 3" in result.output

    dst = Store.open(database)
    try:
        assert _dump(dst) == before
        # the App carries on where the old database stopped: new ids follow the copied ones
        queue = JobQueue(dst)
        assert queue.enqueue("review", {}, installation_id=T.installation_id, repo=T.repo, pr=4) == 4
        assert queue.claim("w").id == 2  # type: ignore[union-attr]
        assert records.active_model_params(dst, T) == json.dumps({"w": [0.25]})
    finally:
        dst.close()

    again = CliRunner().invoke(app, ["db", "copy", "--from", str(old), "--to", database])
    assert again.exit_code == 1 and "not empty" in again.output

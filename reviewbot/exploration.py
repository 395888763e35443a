"""Recording what the filter decided, so feedback can be tied back and exploration measured apart.

The noise filter (select.py) marks the near-threshold candidates it posts anyway with
`Decision.explore`. This module writes every decision of a review run into `findings`: posted
ones with their GitHub comment id (feedback arrives by comment id), suppressed ones with their
score and reason (they are followed up later: did their code change anyway?), and `explore = 1`
on the explored ones, which the stats count apart from the regular comments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from reviewbot.models import Decision
from reviewbot.signals import persisted_signals
from reviewbot.store import Store


class FindingRecordError(ValueError):
    """A decision that cannot be stored as given (e.g. an explored candidate that was not posted)."""


def _features(d: Decision) -> str:
    c = d.candidate
    data = {
        "confidence": c.confidence,
        "hunk_size": c.hunk_size,
        "language": c.language,
        "support": 1,
    }
    data.update(persisted_signals(c, d.review_size))
    return json.dumps({k: v for k, v in data.items() if v is not None}, sort_keys=True)


def record_review_findings(
    store: Store,
    *,
    review_id: int,
    repo: str,
    pr: int,
    decisions: Sequence[Decision],
    comment_ids: Mapping[str, int],
    now: str,
    installation_id: int | None = None,
) -> dict[str, int]:
    """Store one review run's decisions (posted and suppressed); returns fingerprint -> finding id.

    `comment_ids` is fingerprint -> GitHub comment id for what GitHub accepted
    (github.PostedReview.comment_ids). A posted decision GitHub rejected is stored as suppressed
    with reason 'rejected by GitHub', so the stats never count a comment nobody could see.
    """
    out: dict[str, int] = {}
    with store.transaction():
        for d in decisions:
            if d.explore and d.decision != "post":
                raise FindingRecordError(f"{d.fingerprint}: only posted candidates can be explored")
            c = d.candidate
            comment_id = comment_ids.get(d.fingerprint) if d.decision == "post" else None
            decision, reason = d.decision, d.reason
            if d.decision == "post" and comment_id is None:
                decision, reason = "suppress", f"rejected by GitHub ({d.reason})"
            cur = store.conn.execute(
                "INSERT INTO findings (review_id, installation_id, repo, pr, path, line, end_line, side, "
                "title, body, severity, category, source, rule_id, symbol, score, decision, reason, "
                "cluster, fingerprint, explore, github_comment_id, features, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    review_id, installation_id, repo, pr, c.path, c.line, c.end_line, c.side,
                    c.title, c.body, d.severity, d.category, c.source, c.rule_id, c.symbol, d.score,
                    decision, reason, d.cluster, d.fingerprint, int(d.explore and decision == "post"),
                    comment_id, _features(d), now,
                ),
            )  # fmt: skip
            out[d.fingerprint] = int(cur.lastrowid or 0)
    return out

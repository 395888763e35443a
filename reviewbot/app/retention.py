"""How long bookkeeping rows are kept: webhook deliveries and finished jobs are pruned.

A delivery row exists so that a redelivery is recognised; GitHub redelivers (automatically or from
the App's settings page) within days, so rows older than `keep_days` only grow the file. Finished
jobs are kept as long for debugging. Reviews, findings, feedback and models are never pruned here:
they are the product's memory (an uninstall deletes them, see worker.delete_installation_data).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from reviewbot.app.store import Store

KEEP_DAYS = 14
FINISHED_JOB_STATES = ("done", "superseded")


def prune(store: Store, *, now: datetime, keep_days: int = KEEP_DAYS) -> dict[str, int]:
    """Delete deliveries and finished jobs older than `keep_days`; returns how many of each.

    Dead-lettered and failed jobs stay until someone looks at them (the admin endpoints list them).
    """
    cutoff = (now - timedelta(days=keep_days)).isoformat(timespec="microseconds")
    with store.transaction() as conn:
        deliveries = conn.execute("DELETE FROM deliveries WHERE received_at < ?", (cutoff,)).rowcount
        marks = ", ".join("?" for _ in FINISHED_JOB_STATES)
        jobs = conn.execute(
            f"DELETE FROM jobs WHERE state IN ({marks}) AND updated_at < ?", (*FINISHED_JOB_STATES, cutoff)
        ).rowcount
    return {"deliveries": deliveries, "jobs": jobs}

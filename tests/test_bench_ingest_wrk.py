"""bench/ingest.py driven by wrk: the database check holds at a small size (skipped without wrk),
and without wrk the bench says how to install it and exits 2."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("bench_ingest_wrk", ROOT / "bench" / "ingest.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest_wrk"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")
def test_wrk_level_stores_every_delivery_it_acknowledged_once(tmp_path: Path) -> None:
    bench = _bench()
    secret = "bench-" + hashlib.sha256(b"3").hexdigest()[:16]
    deliveries = bench.build_deliveries(3000, secret.encode(), seed=3)
    requests_file = tmp_path / "requests.tsv"
    bench.write_wrk_requests(deliveries, requests_file)
    level = bench.run_level(4, deliveries, requests_file, secret, seconds=2, workdir=tmp_path)
    rep = level.reviewbot
    assert rep.sent > 50 and rep.problems == []
    assert (rep.lost, rep.double, rep.forged_accepted, rep.errors) == (0, 0, 0, 0)
    assert rep.accepted > 0 and rep.rejected > 0  # valid ones stored, forged ones refused
    assert rep.jobs_found == rep.jobs_expected > 0
    assert level.noop.requests > 50 and level.noop.statuses.keys() == {202}
    assert level.sampled >= bench.IN_FLIGHT_FLOOR * 4  # the generator kept the level in flight


def test_a_level_the_generator_did_not_keep_in_flight_fails_the_bench() -> None:
    """Two wrk threads that, as each request went out, found on average 2.5 and 3.5 others
    unanswered kept 8 in flight, not the 16 the row names. Thread 1 also counts the request wrk
    asked its script for before the run and never sent."""
    bench = _bench()
    run = bench.WrkRun(
        requests=9800, seconds=10.0, mean_ms=7.4, sent=[4901, 4900], busy=[12250 + 4900, 17150]
    )
    assert run.sampled_in_flight == pytest.approx(8.0)
    assert bench.in_flight(run) == pytest.approx(7.252)  # throughput x wrk's mean, beside it
    short = bench.Level(16, None, run, run)
    kept = bench.Level(8, None, run, run)
    assert bench.short_levels([short, kept]) == ["16 requested, 8.0 in flight"]


def test_requested_follows_the_lua_rotation() -> None:
    bench = _bench()
    ds = [bench.Delivery(str(i), "ping", b"{}", "sig", "valid", 0) for i in range(5)]
    got = [d.id for d in bench.requested(ds, [4, 2])]  # thread 1: 0, 2, 4, 0; thread 2: 1, 3
    assert got == ["0", "2", "4", "0", "1", "3"]


def test_without_wrk_the_bench_exits_2_and_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _bench().main(["--duration", "1"]) == 2
    assert "apt-get install -y wrk" in capsys.readouterr().err

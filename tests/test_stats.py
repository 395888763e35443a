"""stats.py over a store with known data (tests/feedback_data.py spells out every number)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from reviewbot.app.records import Tenant, tenant_of, tenants
from reviewbot.app.store import Store
from reviewbot.commands import stats_cmd
from reviewbot.core.config import load_config
from reviewbot.core.config_schema import DEFAULT_EXCLUDE
from reviewbot.learning.stats import load_repo_data, path_group, repo_stats, suggest_config, week_of

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.feedback_data import OTHER_TENANT, REPO, TENANT, seed
except ImportError:
    from feedback_data import OTHER_TENANT, REPO, TENANT, seed  # type: ignore[no-redef]


@pytest.fixture()
def store() -> Iterator[Store]:
    s = Store.open(":memory:")
    seed(s)
    yield s
    s.close()


def test_funnel_and_headline_figures(store: Store) -> None:
    s = repo_stats(store, TENANT)
    assert (s.candidates, s.posted, s.suppressed) == (35, 29, 6)
    assert (s.labelled, s.accepted, s.dismissed, s.untouched) == (28, 14, 14, 1)
    # explored comments are counted apart from the regular ones
    assert (s.regular.posted, s.regular.accepted, s.regular.dismissed) == (26, 13, 12)
    assert s.precision == pytest.approx(13 / 25)
    assert (s.explore.posted, s.explore.accepted, s.explore.dismissed) == (3, 1, 2)
    assert (s.suppressed_followed_up, s.suppressed_changed) == (5, 2)


def test_over_time_category_rule_and_dismissed(store: Store) -> None:
    s = repo_stats(store, TENANT)
    assert [(t.key, t.posted, t.accepted, t.dismissed) for t in s.over_time] == [
        ("2026-01-05", 10, 7, 2),
        ("2026-01-12", 12, 2, 10),
        ("2026-01-19", 4, 4, 0),
    ]
    cats = {t.key: (t.posted, t.accepted, t.dismissed) for t in s.by_category}
    assert cats == {"bug": (10, 7, 2), "style": (12, 2, 10), "security": (4, 4, 0)}
    rules = {t.key: t.precision for t in s.by_rule}
    assert rules == {
        "llm": pytest.approx(7 / 9),
        "py.bare-except": pytest.approx(2 / 12),
        "py.sql-injection": 1.0,
    }
    assert [(t.key, t.dismissed) for t in s.top_dismissed_rules] == [("py.bare-except", 10), ("llm", 2)]
    assert s.model is not None and (s.model.version, s.model.metrics["auc"]) == (2, 0.74)
    assert [m.version for m in s.model_history] == [1, 2]


def test_other_repo_and_listing(store: Store) -> None:
    assert tenants(store) == [OTHER_TENANT, TENANT]
    assert tenant_of(store, REPO) == TENANT and tenant_of(store, "nobody/none") is None
    s = repo_stats(store, OTHER_TENANT)
    assert (s.posted, s.labelled, s.precision, s.model) == (1, 0, None, None)
    assert repo_stats(store, Tenant(1, "nobody/none")).candidates == 0
    d = repo_stats(store, TENANT).as_dict()
    assert d["funnel"] == {"candidates": 35, "posted": 29, "labelled": 28, "accepted": 14}


def test_suggest_config_follows_the_data(store: Store) -> None:
    sug = suggest_config(load_repo_data(store, TENANT), min_samples=10)
    assert sug.changes["rules"] == {"disable": ["py.bare-except"]}
    assert sug.changes["paths"] == {"exclude": [*DEFAULT_EXCLUDE, "src/legacy/**"]}
    # the suggestion is a valid config file
    cfg = load_config(yaml.safe_dump(sug.changes))
    assert cfg.min_acceptance == pytest.approx(0.357) and "py.bare-except" in cfg.rules.disable
    # lowest threshold whose posted comments at or above it reach 70% precision
    assert sug.changes["min_acceptance"] == pytest.approx(0.357)
    assert any("10 of 12" in r for r in sug.reasons)
    # not enough samples -> no suggestion at all
    assert suggest_config(load_repo_data(store, TENANT), min_samples=100).changes == {}
    assert suggest_config(load_repo_data(store, OTHER_TENANT)).changes == {}


def test_helpers() -> None:
    assert week_of("2026-01-07T23:00:00Z") == "2026-01-05"
    assert path_group("src/gen/a/b.py") == "src/gen/**"
    assert path_group("setup.py") == "setup.py"
    assert path_group(None) == "(no path)"


@pytest.fixture()
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviewbot.db"
    s = Store.open(path)
    seed(s)
    s.close()
    return path


def _cli() -> typer.Typer:
    app = typer.Typer()
    stats_cmd.register(app)
    return app


def test_stats_command_prints_the_store_figures(db_file: Path) -> None:
    r = CliRunner().invoke(_cli(), ["stats", REPO, "--db", str(db_file)])
    assert r.exit_code == 0, r.output
    assert "precision        52.0%" in r.output
    assert "35 candidates -> 29 posted -> 28 labelled -> 14 accepted" in r.output
    assert "model            v2 (40 labels" in r.output
    assert re.search(r"py\.bare-except\s+12\s+2\s+10\s+16\.7%", r.output)
    r = CliRunner().invoke(_cli(), ["stats", REPO, "--db", str(db_file), "--json"])
    assert json.loads(r.output)["funnel"]["posted"] == 29


def test_stats_command_errors(db_file: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(_cli(), ["stats", "not-a-repo", "--db", str(db_file)])
    assert r.exit_code == 2 and "OWNER/REPO" in r.output
    r = CliRunner().invoke(_cli(), ["stats", REPO, "--db", str(tmp_path / "missing.db")])
    assert r.exit_code == 2 and "no such database" in r.output
    r = CliRunner().invoke(_cli(), ["stats", "nobody/none", "--db", str(db_file)])
    assert r.exit_code == 1 and "no findings" in r.output
    assert "Example" in CliRunner().invoke(_cli(), ["stats", "--help"]).output
    assert "Example" in CliRunner().invoke(_cli(), ["suggest-config", "--help"]).output


def test_suggest_config_command_prints_valid_yaml(db_file: Path, tmp_path: Path) -> None:
    current = tmp_path / "reviewbot.yml"
    current.write_text("paths:\n  exclude: ['docs/**']\nmax_comments: 5\n")
    r = CliRunner().invoke(_cli(), ["suggest-config", REPO, "--db", str(db_file), "--current", str(current)])
    assert r.exit_code == 0, r.output
    assert "# Suggested changes" in r.output and "10 of 12 labelled comments dismissed" in r.output
    cfg = load_config(r.output)  # comments and all: a file a team can commit as is
    assert cfg.rules.disable == ["py.bare-except"]
    assert cfg.paths.exclude == ["docs/**", "src/legacy/**"]
    assert cfg.min_acceptance == pytest.approx(0.357)
    r = CliRunner().invoke(_cli(), ["suggest-config", REPO, "--db", str(db_file), "--min-samples", "500"])
    assert r.exit_code == 0 and "supports no config change" in r.output

"""The dashboard in a real headless Chromium: the numbers it renders match the store.

Skipped only when no chromium binary exists AND CI is unset; on CI (`.ci/run` installs it with
`apt-get install -y chromium`) it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from reviewbot.app.store import Store
from reviewbot.learning.dashboard import dashboard_router
from reviewbot.learning.stats import repo_stats

try:  # tests/ as a package (tests/__init__.py) or as a plain directory on sys.path
    from tests.feedback_data import REPO, TENANT, seed, serve
except ImportError:
    from feedback_data import REPO, TENANT, seed, serve  # type: ignore[no-redef]

TOKEN = "browser-admin-token"
CHROMIUM = next(
    (p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None
)

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "no chromium binary on PATH (install: apt-get install -y chromium); required on CI",
        allow_module_level=True,
    )


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "CI is set but no chromium binary: .ci/run must apt-get install chromium"
    base = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ]
    return subprocess.run(base + args, capture_output=True, text=True, timeout=90, check=False)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    store = Store.open(tmp_path_factory.mktemp("browser") / "db.sqlite")
    seed(store)
    app = FastAPI()
    app.include_router(dashboard_router(store, TOKEN))
    with serve(app) as url:
        yield url, store
    store.close()


def _text(dom: str, pattern: str) -> str:
    m = re.search(pattern, dom, re.S)
    assert m, f"{pattern!r} not in the rendered page"
    return m.group(1).strip()


def test_dashboard_renders_store_numbers_in_chromium(app_url: tuple[str, Store], tmp_path: Path) -> None:
    url, store = app_url
    page = f"{url}/repos/{REPO}?token={TOKEN}"
    dump = _chromium(["--dump-dom", page], tmp_path / "profile")
    assert dump.returncode == 0, dump.stderr[-2000:]
    dom = dump.stdout
    s = repo_stats(store, TENANT)
    assert _text(dom, r'id="repo">([^<]+)<') == REPO
    assert _text(dom, r'id="precision">([^<]+)<') == f"{s.precision * 100:.1f}%"
    assert _text(dom, r'id="posted">([^<]+)<') == str(s.posted)
    assert _text(dom, r'id="accepted">([^<]+)<') == str(s.accepted)
    assert _text(dom, r'id="model-version">([^<]+)<') == f"v{s.model.version}"
    for key, value in (("candidates", s.candidates), ("posted", s.posted), ("labelled", s.labelled)):
        assert _text(dom, rf'data-k="funnel-{key}">([^<]+)<') == str(value)
    for t in s.by_rule:
        row = _text(dom, rf'id="by-rule".*?data-key="{re.escape(t.key)}">(.*?)</tr>')
        assert f">{t.posted}<" in row and f">{t.dismissed}<" in row
    assert dom.count("<circle") == len(s.over_time)

    shot = tmp_path / "dashboard.png"
    run = _chromium([f"--screenshot={shot}", page], tmp_path / "profile2")
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.stat().st_size > 10_000  # a rendered page, not a blank one
    keep = os.environ.get("REVIEWBOT_SCREENSHOT_DIR")
    if keep:
        shutil.copy(shot, Path(keep) / "dashboard.png")


def test_browser_without_token_gets_401(app_url: tuple[str, Store], tmp_path: Path) -> None:
    url, _ = app_url
    dump = _chromium(["--dump-dom", f"{url}/repos/{REPO}"], tmp_path / "profile")
    assert "401" in dump.stdout and "precision" not in dump.stdout
    assert httpx.get(f"{url}/repos").status_code == 401

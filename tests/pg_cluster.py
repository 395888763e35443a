"""A throwaway PostgreSQL cluster for the tests, and a fresh database per test.

REVIEWBOT_TEST_DATABASE_URL (set by .ci/run, or by a developer: a user allowed to CREATE
DATABASE) names a server to use; without it,
when PostgreSQL's binaries are installed (`initdb` on PATH, or Debian's under
/usr/lib/postgresql/*/bin), one cluster is started in a temp dir for the session (as the
`postgres` user when running as root: PostgreSQL refuses root) and stopped at exit. Each test
gets its own database, created from a migrated template (CREATE DATABASE ... TEMPLATE is a file
copy: milliseconds). Neither available: the PostgreSQL cases skip, saying why.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "REVIEWBOT_TEST_DATABASE_URL"
#: C collation: text sorts byte by byte, as in SQLite.
BLANK = "TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return debian[-1] if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL server the session uses: one it started (and stops), or a given URL."""

    def __init__(self, base_url: str, data_dir: Path | None = None, pg_ctl: str | None = None) -> None:
        parts = urlsplit(base_url)  # a server: any database named in the URL is not used
        self.base_url = urlunsplit((parts.scheme, parts.netloc, "", "", "")).rstrip("/")
        self.data_dir = data_dir
        self._pg_ctl = pg_ctl
        self._names = itertools.count()
        self._prefix = f"rb_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._template_ready = False

    @classmethod
    def start(cls, *, durable: bool = False) -> Cluster:
        """A new cluster in a temp dir. Not `durable` (the tests' default): fsync=off, commits
        never wait for the disk. `durable`: PostgreSQL's defaults (fsync and synchronous_commit on),
        as production runs (bench/queue_pg.py measures both)."""
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError("initdb/pg_ctl not found")
        root = Path(tempfile.mkdtemp(prefix="reviewbot-pg-"))
        data = root / "data"
        as_user: list[str] = []
        user = os.environ.get("USER") or "postgres"
        if os.geteuid() == 0:
            as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")
            user = "postgres"
        port = _free_port()
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", user, "--locale=C", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not durable:
            opts += " -c fsync=off"
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
        )
        return cls(f"postgresql://{user}@127.0.0.1:{port}", data, pg_ctl)

    def stop(self) -> None:
        if self.data_dir is None or self._pg_ctl is None:
            return
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_user, self._pg_ctl, "-D", str(self.data_dir), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"{self.base_url}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _ensure_template(self) -> str:
        """A migrated database to copy (one per process: xdist workers share a server)."""
        name = f"{self._prefix}_template"
        if not self._template_ready:
            from reviewbot.app.store import Store

            self._admin(f"CREATE DATABASE {name} {BLANK}")
            Store.open(self.url(name)).close()
            self._template_ready = True
        return name

    def fresh_database(self, *, migrated: bool = True) -> str:
        """A new, empty (or freshly migrated) database's URL."""
        name = f"{self._prefix}_{next(self._names)}"
        if migrated:
            self._admin(f"CREATE DATABASE {name} TEMPLATE {self._ensure_template()}")
        else:
            self._admin(f"CREATE DATABASE {name} {BLANK}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def cluster_from_env(*, durable: bool = False) -> tuple[Cluster | None, str]:
    """The session's cluster, or None and why there is none (`durable`: see Cluster.start; a
    server named by REVIEWBOT_TEST_DATABASE_URL runs as it was configured)."""
    url = os.environ.get(URL_ENV)
    if url:
        return Cluster(url), ""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None, "psycopg is not installed (pip install 'reviewbot[postgres]')"
    try:
        return Cluster.start(durable=durable), ""
    except FileNotFoundError:
        return None, f"PostgreSQL is not installed (no initdb/pg_ctl) and {URL_ENV} is not set"
    except subprocess.CalledProcessError as exc:
        return None, f"could not start a PostgreSQL cluster: {exc.stderr.decode(errors='replace')[-300:]}"

"""Issue #11's hostile inputs, timed before and after: writes RELIABILITY.md's "Hostile input" section.

Each attack runs in its own subprocess with a timeout, once against the code at `--before` (a
git revision, unpacked with `git archive`) and once against this checkout. A "before" that hits
the timeout is shown as "> N s (stopped)". Exits non-zero when an "after" figure misses its
target (every attack answered within TARGET seconds).

    python bench/hostile.py                      # before = 045d08e (the code the issue measured)
    python bench/hostile.py --before main --timeout 30 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELIABILITY = ROOT / "RELIABILITY.md"
HEADING = "## Hostile input (issue #11): text, globs, rules, config"
BEFORE = "045d08e"  # main before the fix (the code issue #11 measured)
TARGET = 1.0  # seconds: every attack is answered (done or refused) within this

sys.path.insert(0, str(ROOT))
from bench.benchmarks_md import write_section  # noqa: E402
from bench.tree_imports import pin  # noqa: E402


@dataclass(frozen=True)
class Attack:
    name: str
    code: str  # Python run in the subprocess; the timed part sets `result` (a short string)


_RULE = """
from reviewbot.core.config_schema import RepoConfig
from reviewbot.review.rule_selection import all_added, ruleset_from_config
query = '((string) @match (#match? @match "^\\\\"(a+)+$"))'
cfg = RepoConfig.model_validate({"rules": {"custom": [{"id": "evil", "languages": ["python"],
    "severity": "low", "category": "bug", "message": "m", "query": query}]}})
rules = ruleset_from_config(cfg.rules)
src = 'x = "' + "a" * 28 + 'b"\\n'
file = all_added("a.py", src)
rules.compiled("python")  # compile the packs first: time the run alone
T0()
result = f"{len(rules.run(file, src))} findings"
"""

ATTACKS = [
    Attack(
        "1. an added line of `<` + 20,000 spaces (prompt.neutralise)",
        "from reviewbot.review.prompt import neutralise\ntext = '<' + ' ' * 20_000\nT0()\n"
        "result = f'{len(neutralise(text))} chars'",
    ),
    Attack(
        "1. an added line of `<` + 150,000 spaces",
        "from reviewbot.review.prompt import neutralise\ntext = '<' + ' ' * 150_000\nT0()\n"
        "result = f'{len(neutralise(text))} chars'",
    ),
    Attack(
        '2. `exclude: ["**/" x14 + "x"]`, a 40-deep path',
        "from reviewbot.core.config import load_config\n"
        "cfg = load_config('paths:\\n  exclude: [\"' + '**/' * 14 + 'x\"]\\n')\n"
        "path = '/'.join(['a'] * 40) + '/y'\nT0()\nresult = f'included={cfg.path_included(path)}'",
    ),
    Attack(
        "2. include glob `*a` x6 + `b` against 100 a's",
        "from reviewbot.core.config import load_config\n"
        "cfg = load_config('paths:\\n  include: [\"' + '*a' * 6 + 'b\"]\\n')\n"
        "T0()\nresult = f'included={cfg.path_included(\"a\" * 100)}'",
    ),
    Attack(
        "2. `skip_authors` `*a` x12 + `b` against a 100-character login",
        "from reviewbot.core.config import load_config\n"
        "cfg = load_config('triggers:\\n  skip_authors: [\"' + '*a' * 12 + 'b\"]\\n')\n"
        "T0()\nresult = f'review={cfg.should_review(\"a\" * 100, [], False)[0]}'",
    ),
    Attack('2. custom rule `#match? "^\\"(a+)+$"` on a 30-character string', _RULE),
    Attack(
        "1. a matched line with 10,000 `noqa:` markers (rule suppression)",
        "from reviewbot.review.rules import suppressed\nline = 'x = eval(y)  # ' + 'noqa:' * 10_000\nT0()\n"
        "result = f'suppressed={suppressed(\"py-eval-exec\", [line], 1, 1)}'",
    ),
    Attack(
        "3. config of 4,000 keys (flow style, 45 KiB), org + repo",
        "from reviewbot.core.config import load_config, ConfigError\n"
        "text = 'rules:\\n  severity: {' + ', '.join(f'r{i}: low' for i in range(4_000)) + '}\\n'\nT0()\n"
        "try:\n    load_config(text, text); result = 'loaded'\n"
        "except ConfigError as e:\n    result = 'refused: ' + e.messages[0][:60]",
    ),
    Attack(
        "3. config of 20,000 keys (flow style, 244 KiB), org + repo",
        "from reviewbot.core.config import load_config, ConfigError\n"
        "text = 'rules:\\n  severity: {' + ', '.join(f'r{i}: low' for i in range(20_000)) + '}\\n'\n"
        "T0()\ntry:\n    load_config(text, text); result = 'loaded'\n"
        "except ConfigError as e:\n    result = 'refused: ' + e.messages[0].split(': ', 1)[1][:60]",
    ),
    Attack(
        "3. config of 1 MB (60,000 exclude globs)",
        "from reviewbot.core.config import load_config, ConfigError\n"
        "text = 'paths:\\n  exclude:\\n' + ''.join(f'    - \"gen{i}/**\"\\n' for i in range(60_000))\nT0()\n"
        "try:\n    load_config(text); result = 'loaded'\n"
        "except ConfigError as e:\n    result = 'refused: ' + e.messages[0].split(': ', 1)[1][:60]",
    ),
    Attack(
        "3. one path against an exclude list of 20,000 globs",
        "from reviewbot.core.config import load_config, ConfigError\n"
        "text = 'paths:\\n  exclude: [' + ', '.join(f'g{i}/**' for i in range(20_000)) + ']\\n'\n"
        "try:\n    cfg = load_config(text)\nexcept ConfigError as e:\n    cfg = None; err = e.messages[0]\n"
        "T0()\nif cfg is None:\n    result = 'refused at load: ' + err.split(': ', 1)[1][:50]\n"
        "else:\n    for i in range(3):\n        cfg.path_included(f'src/{i}/x.py')\n"
        "    result = 'per path: ' + f'{(now() - t0) / 3 * 1000:.0f} ms'",
    ),
    Attack(
        "3. one path against an exclude list of 1,000 globs",
        "from reviewbot.core.config import load_config\n"
        "text = 'paths:\\n  exclude:\\n' + ''.join(f'    - \"g{i}/**/*.py\"\\n' for i in range(1000))\n"
        "cfg = load_config(text)\n"
        "cfg.path_included('warm.py')\nT0()\n"
        "for i in range(100):\n    cfg.path_included(f'src/{i}/' + 'a/' * 30 + 'x.py')\n"
        "result = 'per path: ' + f'{(now() - t0) / 100 * 1000:.2f} ms'",
    ),
]

_PRELUDE = """
import json, sys, time
now = time.perf_counter
t0 = now()
def T0():
    global t0
    t0 = now()
"""

_EPILOGUE = """
print(json.dumps({"seconds": now() - t0, "result": result, "outside": outside_modules()}))
"""


def run(attack: Attack, code_root: Path, timeout: float) -> tuple[float | None, str]:
    """(seconds, result) of one attack against the package under code_root; None on timeout."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    # the attacks name today's modules; pin() binds them to where they were in an older tree
    script = pin(code_root) + _PRELUDE + textwrap.dedent(attack.code) + _EPILOGUE
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tempfile.gettempdir(),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None, "stopped"
    if done.returncode != 0:
        return None, "error: " + (done.stderr.strip().splitlines() or ["?"])[-1][:80]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["outside"]:
        outside = ", ".join(out["outside"])
        raise SystemExit(f"{attack.name}: imported {outside}, not the code under {code_root}")
    return out["seconds"], out["result"]


def unpack(rev: str, into: Path) -> Path:
    """The package (and the rule packs it links to) as of `rev`, in a temporary folder."""
    data = subprocess.run(
        ["git", "archive", "--format=tar", rev, "reviewbot", "rules"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="fully_trusted")
    return into


def fmt(seconds: float | None, result: str, timeout: float) -> str:
    if seconds is None:
        return f"> {timeout:g} s ({result})"
    shown = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"
    return f"{shown} ({result})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE, help="git revision of the code before the fix")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds before an attack is stopped")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RELIABILITY.md as it is")
    args = ap.parse_args()

    rows: list[tuple[str, str, str]] = []
    missed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        old_root = unpack(args.before, Path(tmp))
        for attack in ATTACKS:
            before = run(attack, old_root, args.timeout)
            after = run(attack, ROOT, max(args.timeout, 10 * TARGET))
            rows.append((attack.name, fmt(*before, args.timeout), fmt(*after, args.timeout)))
            print(f"{attack.name}\n    before: {rows[-1][1]}\n    after:  {rows[-1][2]}", flush=True)
            if after[0] is None or after[0] > TARGET:
                missed.append(attack.name)

    table = ["| attack | before | after |", "| --- | --- | --- |"]
    table += [f"| {name} | {b} | {a} |" for name, b, a in rows]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    section = SECTION.format(
        before=args.before, timeout=f"{args.timeout:g}", table="\n".join(table), load=load
    )
    if not args.no_write:
        write_section(HEADING, section, RELIABILITY)
        print(f"wrote the section to {RELIABILITY}")
    if missed:
        print(f"MISSED the {TARGET:g} s target: {missed}", file=sys.stderr)
        return 1
    return 0


SECTION = """\
## Hostile input (issue #11): text, globs, rules, config

A PR author controls the diff's text; a tenant controls `.github/reviewbot.yml` (globs, custom
rules with tree-sitter queries and `#match?` regexes). Each stage that reads them is bounded:

- **Text** (`prompt.neutralise`): the tag look-alike regex is linear (possessive whitespace runs
  split by a '/', so no run is tried twice); it may run on a whole line before any cut. The
  other regexes over a PR's text were quadratic too and are now linear scans: the `noqa: S123`
  suppression check, HTML comments dropped from bodies, the SVN suffix of diff file names. A
  test runs hostile shapes (each regex's own fragments repeated, long runs) against every
  module-level regex in the package.
- **Globs** (`reviewbot/core/globs.py`, one dialect for `paths`, rule `paths`, `path_instructions`,
  `min_severity_by_path`; `triggers.skip_authors` and rule ids use its `*`/`?` name patterns):
  translated to RE2 (google-re2), linear in the path; a list is compiled once into one
  alternation (one pass per path, however long); at most 500 characters a glob and 1,000 a list.
- **Custom rules** (`reviewbot/review/query_predicates.py`, `rules.py`): `#match?`-family regexes run on
  RE2 through a predicate callback (the query text is rewritten outside strings and comments); a
  regex RE2 cannot run (lookaround, backreferences) is a query that does not compile. Each custom
  rule runs as its own query, 200 rows at a time, with at most 2 s of query time per review (6 s
  for all of a repo's custom rules, at most 50 of them); one that overruns is disabled for the
  rest of the review and named in the check run's notes.
- **Config**: at most 64 KiB and 10,000 keys and values (alias copies count), refused before
  parsing / while building with a `ConfigError` naming the limit; libyaml composes; the layer
  merge is linear (origins indexed by parent path).

Measured by `python bench/hostile.py` (each attack in its own process, stopped after {timeout} s;
"before" is the code at `{before}`; 2 cores shared with other work, load average {load} at the end):

{table}

Tests: `tests/test_hostile.py` (each item under a per-call deadline, `tests/deadline.py`, so a
regression fails in about a second) and the hostile-shape fuzzers in `tests/test_fuzz.py`.

Limits that remain:
- Two regexes are still quadratic on a flood of backticks, both over the LLM's output (which a
  PR can steer): `prompt._FENCE` (reply parsing, h12's rewrite) and `render._CODE_RE` (comment
  bodies); the reply's size bounds them (16,000 characters: 0.3 s; 60,000: 4.6 s).
- tree-sitter's own query matching has no deadline inside one 200-row slice (the binding's
  progress callback crashes in tree-sitter 0.26.1, and a predicate may not raise); a cursor's
  in-progress matches are capped at 256 and the predicates stop costing once the budget is spent.
- The budgets are per review: a PR's review spends at most 6 s in custom rules, but many PRs of
  one tenant each spend it (the per-job timeout and the queue's per-installation limit bound
  that). The built-in rules are trusted and run without a budget (their regexes are on RE2 too).
- Parsing (tree-sitter, unidiff) is linear but not budgeted; the file-size cap bounds it.
- The server side (CPU work off the event loop, per-job timeouts, connection limits) is in its
  own section.
"""


if __name__ == "__main__":
    raise SystemExit(main())

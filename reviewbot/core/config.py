"""The per-repository file `.github/reviewbot.yml`: YAML text -> a validated `RepoConfig`.

Merge order: built-in defaults < org defaults (the org's `.github` repository, same file name) <
the repo's file. Mappings merge key by key; lists and scalars replace. The file is read from the
default branch by the caller, never from the PR head, so a PR cannot switch off its own review.

Pure: text in, model out (no I/O). Every problem becomes a line `<file>:<line>: <key>: <message>`
inside a `ConfigError`; users never see a traceback or a pydantic dump.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from reviewbot.core.config_schema import RepoConfig

CONFIG_PATH = ".github/reviewbot.yml"
ORG_CONFIG_FILENAME = "org:.github/reviewbot.yml"


# ------------------------------------------------------------------------------------ loading/errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (file, line, dotted key) and what."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: "
        return where + (f"{self.key}: {self.message}" if self.key else self.message)


class ConfigError(Exception):
    """The config is invalid. `messages` are `<file>:<line>: <key>: <message>` lines."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        self.messages = [str(i) for i in issues]
        super().__init__("\n".join(self.messages))


Path_ = tuple[str | int, ...]


@dataclass
class _Parsed:
    data: dict[str, Any]
    lines: dict[Path_, int]  # key path -> 1-based line of the key (or list item)


#: A config is a few KiB; the file comes from a tenant's repository and is parsed on every review,
#: so a bigger one is refused before parsing (a 1 MB file once cost 15 minutes of merging).
MAX_CONFIG_BYTES = 64 * 1024

#: libyaml's composer when installed (3-4x faster than the pure-Python one, same nodes and marks).
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str) -> yaml.Node | None:
    """Compose with libyaml; on a YAML error compose again in Python for its clearer message (and
    its handling of text libyaml cannot encode, such as a lone surrogate)."""
    try:
        return yaml.compose(text, Loader=_YAML_LOADER)
    except (yaml.YAMLError, UnicodeEncodeError):
        if _YAML_LOADER is yaml.SafeLoader:
            raise
        return yaml.compose(text, Loader=yaml.SafeLoader)


def _parse(text: str | None, filename: str) -> _Parsed:
    """YAML text -> plain data plus the line of every key; errors become ConfigError."""
    if text is None or not text.strip():
        return _Parsed({}, {(): 1})
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            [ConfigIssue(filename, 1, "", f"the file is {size} bytes; at most {MAX_CONFIG_BYTES} are read")]
        )
    lines: dict[Path_, int] = {(): 1}
    issues: list[ConfigIssue] = []
    try:
        node = _compose(text)
        if node is None or (node.tag == "tag:yaml.org,2002:null" and isinstance(node, yaml.ScalarNode)):
            return _Parsed({}, {(): 1})  # an empty document ("---" alone)
        lines[()] = node.start_mark.line + 1
        data = _build(node, (), lines, issues, filename, yaml.SafeLoader(""), [_MAX_NODES])
    except yaml.MarkedYAMLError as exc:  # syntax errors, and tags/merges that cannot be built
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise ConfigError([ConfigIssue(filename, line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(filename, 1, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([ConfigIssue(filename, 1, "", "invalid YAML: nested too deeply")]) from None
    except _TooBig:
        raise ConfigError(
            [ConfigIssue(filename, 1, "", f"more than {_MAX_NODES} keys and values (alias copies count)")]
        ) from None
    if not issues and not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"'{data}'"
        issues.append(ConfigIssue(filename, lines[()], "", f"the file must be a mapping of keys, got {kind}"))
    if issues:
        raise ConfigError(issues)
    return _Parsed(data, lines)


def key_lines(text: str | None, filename: str = CONFIG_PATH) -> dict[tuple[str | int, ...], int]:
    """Key path -> 1-based line in `text` (e.g. ("rules", "disable", 0) -> 3), for messages about
    a config that is valid YAML but names something that does not exist. Raises ConfigError."""
    return _parse(text, filename).lines


#: A config has a few hundred keys and values; aliases can make a small file expand exponentially
#: ("billion laughs"), and the file comes from a repository, so building stops here.
MAX_CONFIG_VALUES = 10_000
_MAX_NODES = MAX_CONFIG_VALUES


class _TooBig(Exception):
    pass


def _build(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    issues: list[ConfigIssue],
    filename: str,
    constructor: yaml.SafeLoader,
    budget: list[int],
) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(ConfigIssue(filename, line, _dotted(path), "a key must be a plain string"))
                continue
            key = key_node.value  # the raw text: `on:` stays "on", `123:` stays "123"
            if key in out:
                issues.append(
                    ConfigIssue(
                        filename,
                        line,
                        _dotted((*path, key)),
                        f"duplicate key (first set on line {lines[(*path, key)]})",
                    )
                )
                continue
            lines[(*path, key)] = line
            out[key] = _build(value_node, (*path, key), lines, issues, filename, constructor, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            items.append(_build(item, (*path, i), lines, issues, filename, constructor, budget))
        return items
    return constructor.construct_object(node, deep=True)


#: Keys where a later layer setting one clears the other from earlier layers.
_EXCLUSIVE: tuple[tuple[str, str], ...] = (("min_acceptance", "target_precision"),)


class _Origins:
    """Where each key path of the merged config was set: (file, line), by path.

    Indexed by parent path too, so replacing or forgetting a subtree costs its size, not the size
    of the whole config (merging was quadratic in keys: 20k keys took 49 s).
    """

    def __init__(self) -> None:
        self.at: dict[Path_, tuple[str, int]] = {}
        self._kids: dict[Path_, set[Path_]] = {}

    def __contains__(self, path: Path_) -> bool:
        return path in self.at

    def __getitem__(self, path: Path_) -> tuple[str, int]:
        return self.at[path]

    def set(self, path: Path_, where: tuple[str, int]) -> None:
        self.at[path] = where
        if path:
            self._kids.setdefault(path[:-1], set()).add(path)

    def forget(self, prefix: Path_) -> None:
        """Drop `prefix` and everything below it."""
        stack = [prefix]
        while stack:
            path = stack.pop()
            self.at.pop(path, None)
            stack.extend(self._kids.pop(path, ()))
        if prefix:
            self._kids.get(prefix[:-1], set()).discard(prefix)


def _children(lines: dict[Path_, int]) -> dict[Path_, list[Path_]]:
    """Parent path -> the key paths directly under it, for one layer's `lines`."""
    kids: dict[Path_, list[Path_]] = {}
    for path in lines:
        if path:
            kids.setdefault(path[:-1], []).append(path)
    return kids


def _merge(
    base: dict[str, Any],
    over: dict[str, Any],
    origin: _Origins,
    over_lines: dict[Path_, int],
    filename: str,
    path: Path_ = (),
    kids: dict[Path_, list[Path_]] | None = None,
) -> dict[str, Any]:
    """Deep-merge `over` into `base` (mappings merge, everything else replaces), tracking origins.

    Linear in the keys of both layers: each replaced subtree's origins are walked once.
    """
    if kids is None:
        kids = _children(over_lines)
    merged = dict(base)
    if path == ():
        for a, b in _EXCLUSIVE:
            for mine, other in ((a, b), (b, a)):
                if over.get(mine) is not None and other not in over and other in merged:
                    del merged[other]
                    origin.forget((other,))
    for key, value in over.items():
        sub = (*path, key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            origin.set(sub, (filename, over_lines.get(sub, 1)))
            merged[key] = _merge(merged[key], value, origin, over_lines, filename, sub, kids)
        else:
            origin.forget(sub)
            merged[key] = value
            stack = [sub]
            while stack:
                p = stack.pop()
                if p in over_lines:
                    origin.set(p, (filename, over_lines[p]))
                stack.extend(kids.get(p, ()))
    return merged


def load_config(
    repo_text: str | None,
    org_text: str | None = None,
    *,
    filename: str = CONFIG_PATH,
    org_filename: str = ORG_CONFIG_FILENAME,
) -> RepoConfig:
    """Merge built-in defaults < org file < repo file and validate. Raises ConfigError.

    `None` or empty text means "no file" (defaults). `filename`/`org_filename` only label errors.
    """
    issues: list[ConfigIssue] = []
    layers: list[tuple[_Parsed, str]] = []
    for text, name in ((org_text, org_filename), (repo_text, filename)):
        try:
            layers.append((_parse(text, name), name))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues)

    merged: dict[str, Any] = {}
    origin = _Origins()
    origin.set((), (filename, 1))
    for parsed, name in layers:
        merged = _merge(merged, parsed.data, origin, parsed.lines, name)
    try:
        return RepoConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, origin, filename)) from None


def _issues_from(exc: ValidationError, origin: _Origins, default_file: str) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    seen: set[tuple[str, int, str, str]] = set()
    for err in exc.errors():
        loc = _clean_loc(tuple(err["loc"]))
        file, line = default_file, 1
        for n in range(len(loc), -1, -1):
            if loc[:n] in origin:
                file, line = origin[loc[:n]]
                break
        issue = ConfigIssue(file, line, _dotted(loc), _message(err, loc))
        ident = (issue.file, issue.line, issue.key, issue.message)
        if ident not in seen:
            seen.add(ident)
            issues.append(issue)
    issues.sort(key=lambda i: (i.file != default_file, i.file, i.line))
    return issues


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    """Drop pydantic's '[key]' marker (an error in a mapping key is reported at the key)."""
    return tuple(part for part in loc if part != "[key]")


def _dotted(loc: Path_) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _message(err: Any, loc: Path_) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    shown = _short(value)
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        options = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(key, options, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(options)})"
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "is required"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
        bound = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
        return f"must be {op[kind]} {ctx.get(bound[kind])} (got {shown})"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number (got {shown})"
    if kind in ("float_type", "float_parsing"):
        return f"must be a number (got {shown})"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false (got {shown})"
    if kind == "string_type":
        return f"must be a string (got {shown})"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "list_type":
        return f"must be a list (got {shown})"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of keys (got {shown})"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {shown})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')} (got {shown})"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{err['msg']} (got {shown})"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _allowed_keys(loc: Path_) -> list[str]:
    """Field names of the model found at `loc` (for did-you-mean on unknown keys)."""
    model: Any = RepoConfig
    for part in loc:
        model = _unwrap(model)
        if isinstance(part, int):
            args = get_args(model)
            model = args[0] if get_origin(model) is list and args else None
        elif isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            return []
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """`X | None` -> X; Annotated[X, ...] -> X."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _unwrap(get_args(tp)[0])
    if origin is Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp

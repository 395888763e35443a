"""Process settings from the environment (prefix `REVIEWBOT_`), built once at the edge.

Commands build one `Settings` (via `Settings.from_env()`) and pass it down; no other module reads
the environment, so tests construct `Settings(...)` by hand and nothing depends on a global.
Secrets are `SecretStr`, so they never show up in a repr, a log line or a traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

ENV_PREFIX = "REVIEWBOT_"
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

#: Why a command needs each setting; `require` puts this in its one-line error.
PURPOSES: dict[str, str] = {
    "github_app_id": "the GitHub App needs its app id to authenticate as the app",
    "github_private_key": "the GitHub App needs its private key (PEM text or a path to the .pem file)",
    "webhook_secret": "the webhook server needs it to verify GitHub's signatures",
    "llm_api_key": "the LLM client needs an API key (or set REVIEWBOT_LLM_BASE_URL for a local server)",
    "llm_base_url": "the LLM client needs the base URL of an OpenAI-compatible server",
    "admin_token": "the admin endpoints need a bearer token",
}


class SettingsError(Exception):
    """A setting is missing or invalid; `str()` is meant to be printed as-is to the user."""


class MissingSettingError(SettingsError):
    """A required setting is not set. `str()` is one line naming the environment variable."""

    def __init__(self, name: str, purpose: str | None = None) -> None:
        self.name = name
        self.env_var = env_var(name)
        self.purpose = purpose or PURPOSES.get(name, "this command needs it")
        super().__init__(f"{self.env_var} is not set: {self.purpose}")


class InvalidSettingError(SettingsError):
    """One or more settings have invalid values; one line per problem, each naming its variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def env_var(name: str) -> str:
    """The environment variable for a settings field name (`webhook_secret` -> `REVIEWBOT_WEBHOOK_SECRET`)."""
    return ENV_PREFIX + name.upper()


class Settings(BaseSettings):
    """Everything a reviewbot process needs from its environment. Pass it explicitly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        env_ignore_empty=True,  # `REVIEWBOT_X=` in an env file means unset, not ""
        populate_by_name=True,
        validate_default=True,
    )

    # GitHub App
    github_app_id: int | None = Field(default=None, description="GitHub App id.")
    github_private_key: SecretStr | None = Field(
        default=None, description="GitHub App private key: PEM text, or a path to the .pem file."
    )
    webhook_secret: SecretStr | None = Field(default=None, description="GitHub webhook secret.")
    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub REST API base URL; for GitHub Enterprise Server use https://HOST/api/v3.",
    )

    # LLM (any OpenAI-compatible server)
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible base URL.")
    llm_model: str = Field(default="gpt-4o-mini", description="Model name sent to the LLM server.")
    llm_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("llm_api_key", "REVIEWBOT_LLM_API_KEY", "OPENAI_API_KEY"),
        description="LLM API key; falls back to OPENAI_API_KEY.",
    )
    llm_timeout: float = Field(default=60.0, gt=0, description="Seconds per LLM request.")
    llm_max_concurrency: int = Field(default=4, ge=1, description="Concurrent LLM requests per process.")
    llm_max_attempts: int = Field(default=4, ge=1, description="Attempts per LLM request (first included).")
    llm_retry_budget: float = Field(
        default=600.0, gt=0, description="Seconds one LLM request may take with all its retries and waits."
    )
    llm_api_version: str | None = Field(
        default=None, description="Azure OpenAI api-version: deployment URLs and the api-key header."
    )
    llm_extra_body: dict[str, Any] | None = Field(
        default=None,
        description='JSON merged into every LLM request body (Ollama: {"options": {"num_ctx": 16384}}).',
    )
    llm_context_window: int | None = Field(
        default=None, ge=512, description="The model's context window in tokens (default: known or learned)."
    )
    llm_max_output_tokens: int | None = Field(
        default=None, ge=16, description="Output limit sent with every request (default: by model family)."
    )
    llm_send_temperature: bool | None = Field(
        default=None, description="Send the sampling temperature (default: by model family, learned)."
    )
    llm_token_param: Literal["max_tokens", "max_completion_tokens"] | None = Field(
        default=None, description="Parameter the output limit is sent in (default: by model family, learned)."
    )
    llm_system_role: Literal["system", "developer", "user"] | None = Field(
        default=None, description="Role of the instructions message (default: by model family, learned)."
    )
    # Cost caps: what a repository's config may ask for, billed to whoever runs the App.
    llm_max_passes: int | None = Field(
        default=None, ge=1, description="Most LLM passes a repo config may ask for."
    )
    llm_allowed_models: str | None = Field(
        default=None, description="Comma-separated models a repo config may choose (unset: any)."
    )
    llm_max_tokens_per_pr: int | None = Field(
        default=None, ge=1, description="LLM tokens (prompt + completion) one review may spend."
    )
    llm_max_tokens_per_installation_day: int | None = Field(
        default=None, ge=1, description="LLM tokens one installation may spend per UTC day."
    )
    llm_prices: dict[str, dict[str, float]] | None = Field(
        default=None,
        description='JSON price per million tokens by model: {"m": {"prompt": 0.15, "completion": 0.6}}.',
    )
    # Per-review caps: a giant PR is reviewed in part (what is left out is named), in bounded cost.
    review_max_files: int | None = Field(
        default=None, ge=1, description="Most changed files one review takes on (the rest are named)."
    )
    review_max_changed_lines: int | None = Field(
        default=None, ge=1, description="Most changed lines (added + deleted) one review takes on."
    )
    review_max_candidates: int | None = Field(
        default=None, ge=1, description="Most candidate findings one review filters (the least severe go)."
    )
    review_max_llm_requests: int | None = Field(
        default=None, ge=1, description="Most LLM requests one review sends (passes and verification)."
    )

    # Storage and processes
    database_path: str = Field(default="./reviewbot.db", description="SQLite database file.")
    database_url: SecretStr | None = Field(
        default=None,
        description=(
            "postgresql://user:password@host:port/db: store and queue on PostgreSQL, shared by any "
            "number of serve and worker processes on any hosts (overrides database_path)."
        ),
    )
    database_pool_min_size: int = Field(
        default=1, ge=0, description="PostgreSQL connections each process opens at start and keeps."
    )
    database_pool_max_size: int = Field(
        default=4,
        ge=1,
        description=(
            "Most PostgreSQL connections one process (each serve, worker and job process) opens; "
            "budget processes x this under the server's max_connections."
        ),
    )
    database_pool_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an operation waits for a free PostgreSQL connection before failing.",
    )
    admin_token: SecretStr | None = Field(default=None, description="Bearer token for admin endpoints.")
    host: str = Field(default="0.0.0.0", description="Address `reviewbot serve` listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `reviewbot serve` listens on.")
    worker_concurrency: int = Field(default=2, ge=1, description="Jobs a worker runs at once.")
    per_installation_concurrency: int = Field(
        default=1, ge=1, description="Jobs of one installation that run at once."
    )
    job_timeout: float = Field(
        default=600.0,
        gt=0,
        description="Seconds a job may run; then its process is killed and the attempt fails.",
    )
    job_processes: bool = Field(
        default=True,
        description="Run each job's handler in a child process (CPU work off the server and worker).",
    )
    log_level: str = Field(default="INFO", description="Python logging level name.")

    #: Unknown REVIEWBOT_* variables seen by `from_env` (one message each); not a setting.
    _env_warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def env_warnings(self) -> list[str]:
        return list(self._env_warnings)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}")
        return level

    @field_validator("llm_extra_body", "llm_prices", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        if isinstance(value, str):  # given as text (a CLI override, a test); the environment is parsed
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"must be a JSON object: {exc}") from None
        return value

    @field_validator("llm_prices")
    @classmethod
    def _prices(cls, value: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]] | None:
        for model, price in (value or {}).items():
            if set(price) != {"prompt", "completion"}:
                raise ValueError(f"{model}: give exactly prompt and completion prices per million tokens")
        return value

    @field_validator("github_api_url", "llm_base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @classmethod
    def from_env(cls, *, log_warnings: bool = True, **overrides: Any) -> Settings:
        """Read the environment once (the edge); invalid values raise `InvalidSettingError`.

        Keyword `overrides` (field names, e.g. from CLI options) win over the environment.
        Unknown `REVIEWBOT_*` variables (typos) are logged as warnings, not silently ignored; a
        command that sets up JSON logging first passes `log_warnings=False` and logs
        `env_warnings` once its handler is in place, so they are JSON lines like the rest.
        """
        warnings = unknown_env_warnings(os.environ)
        if log_warnings:
            for warning in warnings:
                log.warning("%s", warning)
        try:
            settings = cls(**overrides)
            settings._env_warnings = warnings
            return settings
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else "?"
                name = "OPENAI_API_KEY or REVIEWBOT_LLM_API_KEY" if field == "OPENAI_API_KEY" else field
                var = name if name.isupper() else env_var(name)
                msg = str(err["msg"]).removeprefix("Value error, ")
                problems.append(f"{var}: {msg}")
            raise InvalidSettingError(problems) from None

    @property
    def llm_configured(self) -> bool:
        """True when an LLM can be called: a base URL (local server) or an API key is set."""
        return bool(self.llm_base_url) or self.llm_api_key is not None

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            if not value.get_secret_value().startswith(("postgresql://", "postgres://")):
                raise ValueError("must be a postgresql:// URL (SQLite is REVIEWBOT_DATABASE_PATH)")
            return value
        return None

    def database(self) -> str:
        """Where the store lives: the PostgreSQL URL when set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.database_path

    def database_setting(self) -> str:
        """The environment variable that chose the database (for error lines)."""
        return env_var("database_url" if self.database_url is not None else "database_path")

    def require(self, *names: str, purpose: str | None = None) -> None:
        """Raise `MissingSettingError` for the first of `names` that is unset (or empty)."""
        require(self, *names, purpose=purpose)

    def private_key_pem(self) -> str:
        """The GitHub App private key as PEM text, read from the file when a path was given.

        Logs a warning when the key file is readable by group or others (see `private_key_warnings`).
        """
        pem, warnings = self.load_private_key()
        for warning in warnings:
            log.warning("%s", warning)
        return pem

    def private_key_warnings(self) -> list[str]:
        """Problems worth telling the operator about the key, without failing (file permissions)."""
        return self.load_private_key()[1]

    def load_private_key(self) -> tuple[str, list[str]]:
        """(PEM text, warnings). Raises MissingSettingError / InvalidSettingError."""
        require(self, "github_private_key")
        assert self.github_private_key is not None
        raw = self.github_private_key.get_secret_value().strip()
        var = env_var("github_private_key")
        if raw.startswith("-----BEGIN"):
            # Env files and CI secrets often carry the PEM on one line with literal "\n".
            return _normalise_pem(raw), []
        path = Path(raw).expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidSettingError([f"{var}: is neither PEM text nor an existing file: {path}"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSettingError([f"{var}: cannot read key file {path}: {exc}"]) from None
        if "-----BEGIN" not in text:
            raise InvalidSettingError([f"{var}: {path} does not contain a PEM private key"])
        warnings = []
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(
                f"{var}: key file {path} is accessible by group/others "
                f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
            )
        return _normalise_pem(text.strip()), warnings


def github_app_credentials(settings: Settings) -> tuple[int, str, list[str]]:
    """(app id, private key PEM, warnings) the App authenticates with. Raises SettingsError, one
    line naming the variable, when either is unset or the key cannot be read or is no usable
    private key (checked here, before any webhook is accepted, not at the first job)."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    require(settings, "github_app_id", "github_private_key")
    assert settings.github_app_id is not None
    pem, warnings = settings.load_private_key()
    try:
        load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:  # not PEM, encrypted, or not a private key
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        var = env_var("github_private_key")
        raise InvalidSettingError([f"{var}: not a usable private key: {reason}"]) from None
    except Exception as exc:  # cryptography's UnsupportedAlgorithm and friends
        raise InvalidSettingError(
            [f"{env_var('github_private_key')}: not a usable private key: {type(exc).__name__}"]
        ) from None
    return settings.github_app_id, pem, warnings


def require(settings: Settings, *names: str, purpose: str | None = None) -> None:
    """Raise `MissingSettingError` (one line naming the env var) for the first unset setting."""
    for name in names:
        if name not in Settings.model_fields:
            raise KeyError(f"unknown setting {name!r}")
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or (isinstance(value, str) and not value.strip()):
            raise MissingSettingError(name, purpose)


#: REVIEWBOT_* variables that are not settings but are read by reviewbot's own test suite and
#: benches (a PostgreSQL URL for the tests, the path to the shared evaluation data).
NOT_SETTINGS = ("REVIEWBOT_TEST_DATABASE_URL", "REVIEWBOT_SHARED_DATA")


def unknown_env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One warning per `REVIEWBOT_*` variable that is no setting, with a did-you-mean."""
    known = [env_var(name) for name in Settings.model_fields] + list(NOT_SETTINGS)
    warnings = []
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"{name} is not a reviewbot setting and is ignored{hint}")
    return warnings


def _normalise_pem(text: str) -> str:
    if "\\n" in text and "\n" not in text:
        text = text.replace("\\n", "\n")
    return text.strip() + "\n"


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in the settings (and the private key's body lines), for the log
    redaction filter and for redacting what a review publishes."""
    out: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            out.append(value.get_secret_value())
    if settings.github_private_key is not None:
        with contextlib.suppress(Exception):
            pem, _ = settings.load_private_key()
            out.append(pem.strip())
            out.extend(line for line in pem.splitlines() if len(line) >= 40 and "-----" not in line)
    return out

"""Settings: env prefix, OPENAI_API_KEY fallback, one-line errors, private key loading, no leaks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from reviewbot.core.settings import (
    InvalidSettingError,
    MissingSettingError,
    Settings,
    SettingsError,
    env_var,
    require,
    unknown_env_warnings,
)

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n-----END RSA PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the variables they set, whatever the developer's shell exports."""
    for name in list(os.environ):
        if name.startswith("REVIEWBOT_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings.from_env()
    assert s.github_app_id is None
    assert s.github_api_url == "https://api.github.com"
    assert s.llm_model == "gpt-4o-mini"
    assert s.llm_timeout == 60.0
    assert s.llm_max_concurrency == 4
    assert s.database_path == "./reviewbot.db"
    assert (s.host, s.port) == ("0.0.0.0", 8000)
    assert (s.worker_concurrency, s.per_installation_concurrency) == (2, 1)
    assert s.log_level == "INFO"
    assert s.llm_configured is False


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_GITHUB_APP_ID", "12345")
    monkeypatch.setenv("REVIEWBOT_GITHUB_API_URL", "https://ghe.example.com/api/v3/")
    monkeypatch.setenv("REVIEWBOT_LLM_TIMEOUT", "12.5")
    monkeypatch.setenv("REVIEWBOT_PORT", "9001")
    monkeypatch.setenv("REVIEWBOT_LOG_LEVEL", "debug")
    monkeypatch.setenv("REVIEWBOT_DATABASE_PATH", "/var/lib/reviewbot/db.sqlite")
    monkeypatch.setenv("GITHUB_APP_ID", "999")  # unprefixed: ignored
    s = Settings.from_env()
    assert s.github_app_id == 12345
    assert s.github_api_url == "https://ghe.example.com/api/v3"
    assert s.llm_timeout == 12.5
    assert s.port == 9001
    assert s.log_level == "DEBUG"
    assert s.database_path == "/var/lib/reviewbot/db.sqlite"


def test_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_GITHUB_API_URL", "")
    monkeypatch.setenv("REVIEWBOT_WEBHOOK_SECRET", "")
    s = Settings.from_env()
    assert s.github_api_url == "https://api.github.com"
    assert s.webhook_secret is None


def test_openai_api_key_fallback_and_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai")
    s = Settings.from_env()
    assert s.llm_api_key is not None and s.llm_api_key.get_secret_value() == "sk-from-openai"
    assert s.llm_configured is True
    monkeypatch.setenv("REVIEWBOT_LLM_API_KEY", "sk-from-reviewbot")
    assert Settings.from_env().llm_api_key.get_secret_value() == "sk-from-reviewbot"  # type: ignore[union-attr]


def test_llm_configured_by_base_url_alone() -> None:
    s = Settings(llm_base_url="http://127.0.0.1:11434/v1")
    assert s.llm_configured is True
    assert s.llm_api_key is None


def test_invalid_values_are_one_line_each_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_PORT", "eighty")
    monkeypatch.setenv("REVIEWBOT_LLM_BASE_URL", "localhost:8080")
    monkeypatch.setenv("REVIEWBOT_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("REVIEWBOT_WORKER_CONCURRENCY", "0")
    with pytest.raises(InvalidSettingError) as info:
        Settings.from_env()
    lines = str(info.value).splitlines()
    assert len(lines) == 4
    assert any(line.startswith("REVIEWBOT_PORT: ") for line in lines)
    assert "REVIEWBOT_LLM_BASE_URL: must start with http:// or https://" in lines
    assert any(line.startswith("REVIEWBOT_LOG_LEVEL: must be one of") for line in lines)
    assert any(line.startswith("REVIEWBOT_WORKER_CONCURRENCY: ") for line in lines)
    assert "Traceback" not in str(info.value)


def test_missing_secret_is_one_line_naming_the_variable() -> None:
    s = Settings()
    with pytest.raises(MissingSettingError) as info:
        require(s, "webhook_secret")
    message = str(info.value)
    assert message == (
        "REVIEWBOT_WEBHOOK_SECRET is not set: the webhook server needs it to verify GitHub's signatures"
    )
    assert "\n" not in message
    assert info.value.env_var == "REVIEWBOT_WEBHOOK_SECRET"
    assert isinstance(info.value, SettingsError)


def test_require_names_the_first_missing_and_accepts_a_purpose() -> None:
    s = Settings(github_app_id=1, webhook_secret="s")
    s.require("github_app_id", "webhook_secret")  # all set: no error
    with pytest.raises(MissingSettingError, match=r"^REVIEWBOT_GITHUB_PRIVATE_KEY is not set: to sign JWTs$"):
        s.require("github_app_id", "github_private_key", "admin_token", purpose="to sign JWTs")
    with pytest.raises(KeyError):
        require(s, "no_such_setting")
    assert env_var("llm_api_key") == "REVIEWBOT_LLM_API_KEY"


def test_secrets_never_appear_in_repr_str_or_dump(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(
        webhook_secret="whsec-very-secret",
        llm_api_key="sk-very-secret",
        admin_token="adm-very-secret",
        github_private_key=PEM,
    )
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("settings: %s / %r", s, s)
    for text in (repr(s), str(s), s.model_dump_json(), caplog.text):
        assert "very-secret" not in text
        assert "MIIEowIBAAKCAQEA" not in text
    assert s.webhook_secret is not None and s.webhook_secret.get_secret_value() == "whsec-very-secret"


def test_private_key_given_as_pem_text() -> None:
    assert Settings(github_private_key=PEM).private_key_pem() == PEM
    one_line = PEM.strip().replace("\n", "\\n")  # how CI secrets and env files often carry it
    s = Settings(github_private_key=one_line)
    assert s.private_key_pem() == PEM
    assert s.private_key_warnings() == []


def test_private_key_given_as_a_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "app.pem"
    key.write_text(PEM)
    key.chmod(0o600)
    s = Settings(github_private_key=str(key))
    assert s.private_key_pem() == PEM
    assert s.private_key_warnings() == []

    key.chmod(0o644)
    warnings = s.private_key_warnings()
    assert len(warnings) == 1
    assert "REVIEWBOT_GITHUB_PRIVATE_KEY" in warnings[0] and "chmod 600" in warnings[0]
    with caplog.at_level(logging.WARNING, logger="reviewbot.core.settings"):
        assert s.private_key_pem() == PEM
    assert "group/others" in caplog.text


def test_private_key_path_problems_are_typed_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidSettingError, match=r"^REVIEWBOT_GITHUB_PRIVATE_KEY: is neither PEM text"):
        Settings(github_private_key=str(tmp_path / "missing.pem")).private_key_pem()
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("hello")
    with pytest.raises(InvalidSettingError, match="does not contain a PEM private key"):
        Settings(github_private_key=str(not_pem)).private_key_pem()
    with pytest.raises(MissingSettingError, match="^REVIEWBOT_GITHUB_PRIVATE_KEY is not set"):
        Settings().private_key_pem()


def test_the_test_and_bench_variables_are_not_warned_about() -> None:
    """.ci/run exports REVIEWBOT_TEST_DATABASE_URL for the suite and the benches read
    REVIEWBOT_SHARED_DATA: a `reviewbot serve` started under them must not open with a warning."""
    environ = {"REVIEWBOT_TEST_DATABASE_URL": "postgresql://x", "REVIEWBOT_SHARED_DATA": "/data"}
    assert unknown_env_warnings(environ) == []


def test_unknown_reviewbot_variables_are_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert unknown_env_warnings({"REVIEWBOT_WEBHOOK_SECRT": "x", "REVIEWBOT_PORT": "1", "HOME": "/"}) == [
        "REVIEWBOT_WEBHOOK_SECRT is not a reviewbot setting and is ignored "
        "(did you mean REVIEWBOT_WEBHOOK_SECRET?)"
    ]
    monkeypatch.setenv("REVIEWBOT_LLM_MODLE", "x")
    with caplog.at_level(logging.WARNING, logger="reviewbot.core.settings"):
        s = Settings.from_env()
    assert "REVIEWBOT_LLM_MODLE is not a reviewbot setting" in caplog.text
    assert "did you mean REVIEWBOT_LLM_MODEL?" in caplog.text
    assert s.llm_model == "gpt-4o-mini"


def test_from_env_overrides_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REVIEWBOT_PORT", "9000")
    assert Settings.from_env().port == 9000
    assert Settings.from_env(port=9100, database_path="/tmp/x.db").port == 9100


def test_every_setting_is_documented() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    missing = [env_var(name) for name in Settings.model_fields if f"`{env_var(name)}`" not in docs]
    assert not missing, f"docs/configuration.md does not document: {missing}"

from pathlib import Path

import pytest

from ledger.errors import InvalidSetting
from ledger.settings import Settings


def test_every_setting_is_read_from_its_environment_variable() -> None:
    settings = Settings.from_env(
        {
            "JOBLEDGER_DATABASE_URL": "postgresql://u@h/db",
            "JOBLEDGER_DATA_DIR": "/tmp/somewhere",
            "JOBLEDGER_POOL_SIZE": "3",
            "JOBLEDGER_LOOP_CONNECTIONS": "2",
            "JOBLEDGER_IDLE_IN_TRANSACTION_TIMEOUT_MS": "1234",
            "JOBLEDGER_STATEMENT_TIMEOUT_MS": "99",
            "JOBLEDGER_LOCK_TIMEOUT_MS": "77",
            "JOBLEDGER_PROBE_TIMEOUT_S": "0.5",
            "JOBLEDGER_LEASE_SECONDS": "4.5",
            "JOBLEDGER_STALE_PENDING_MINUTES": "2",
            "JOBLEDGER_RECONCILE_INTERVAL_S": "7",
            "JOBLEDGER_AUTO_START_PENDING": "true",
            "JOBLEDGER_LOG_FORMAT": "JSON",
        }
    )
    assert settings == Settings(
        database_url="postgresql://u@h/db",
        data_dir=Path("/tmp/somewhere"),
        pool_size=3,
        loop_connections=2,
        idle_in_transaction_timeout_ms=1234,
        statement_timeout_ms=99,
        lock_timeout_ms=77,
        probe_timeout_s=0.5,
        lease_seconds=4.5,
        stale_pending_minutes=2.0,
        reconcile_interval_s=7.0,
        auto_start_pending=True,
        log_format="json",
    )


def test_unset_and_empty_variables_keep_the_defaults() -> None:
    assert Settings.from_env({"JOBLEDGER_DATABASE_URL": ""}) == Settings()


def test_zero_turns_a_timeout_off() -> None:
    settings = Settings.from_env(
        {"JOBLEDGER_STATEMENT_TIMEOUT_MS": "0", "JOBLEDGER_LOCK_TIMEOUT_MS": "0"}
    )
    assert (settings.statement_timeout_ms, settings.lock_timeout_ms) == (0, 0)


def test_zero_loop_connections_is_a_setting_and_a_negative_count_is_refused() -> None:
    assert Settings.from_env({"JOBLEDGER_LOOP_CONNECTIONS": "0"}).loop_connections == 0
    with pytest.raises(InvalidSetting, match="JOBLEDGER_LOOP_CONNECTIONS must be a count"):
        Settings.from_env({"JOBLEDGER_LOOP_CONNECTIONS": "-1"})


def test_a_log_format_other_than_text_or_json_is_refused_by_name() -> None:
    with pytest.raises(InvalidSetting, match="JOBLEDGER_LOG_FORMAT must be text or json"):
        Settings.from_env({"JOBLEDGER_LOG_FORMAT": "xml"})

"""The bounds on the gateway's own memory and on legacy sessions are settings: defaults,
byte suffixes, and one line naming the variable when a value is wrong."""

from __future__ import annotations

import pytest

from gigmcp.config import ConfigError, load_settings

# load_settings only parses: the directory is never created.
BASE = {"GIG_DATA_DIR": "/tmp/gig-config-test"}


def test_defaults_bound_memory_and_sessions() -> None:
    s = load_settings(BASE)
    assert s.max_message_bytes == 4 << 20
    assert s.client_buffer_bytes == 1 << 20
    assert s.max_server_requests == 16
    assert s.task_result_bytes == 64 << 20
    assert (s.sessions_per_token, s.sessions_per_profile, s.max_sessions) == (100, 1000, 10_000)
    assert s.session_idle_timeout == 3600.0


def test_byte_counts_take_binary_suffixes() -> None:
    s = load_settings({**BASE, "GIG_MAX_MESSAGE_BYTES": "8M", "GIG_CLIENT_BUFFER_BYTES": "512KiB"})
    assert (s.max_message_bytes, s.client_buffer_bytes) == (8 << 20, 512 << 10)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GIG_MAX_MESSAGE_BYTES", "12"),
        ("GIG_MAX_MESSAGE_BYTES", "lots"),
        ("GIG_CLIENT_BUFFER_BYTES", "2T"),
        ("GIG_TASK_RESULT_BYTES", "-1"),
        ("GIG_MAX_SERVER_REQUESTS", "0"),
        ("GIG_SESSIONS_PER_TOKEN", "x"),
        ("GIG_SESSIONS_PER_PROFILE", "0"),
        ("GIG_MAX_SESSIONS", "0"),
        ("GIG_SESSION_IDLE_TIMEOUT", "0.1"),
    ],
)
def test_a_bad_bound_is_refused_with_one_line_naming_it(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, name: value})
    assert str(err.value).startswith(f"{name}: ")
    assert "\n" not in str(err.value)

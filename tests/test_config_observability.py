"""Configuration of metrics, traces and log lines: off by default, one line naming the
variable for a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigmcp.config import ConfigError, load_settings


def test_metrics_and_traces_are_off_and_logs_are_text_by_default(tmp_path: Path) -> None:
    s = load_settings({"GIG_DATA_DIR": str(tmp_path)})
    assert s.metrics_listen is None and s.otlp_endpoint is None
    assert s.log_format == "text" and s.otlp_sample_ratio == 1.0
    off = load_settings({"GIG_DATA_DIR": str(tmp_path), "GIG_METRICS_LISTEN": "off",
                         "GIG_OTLP_ENDPOINT": "off"})  # fmt: skip
    assert off.metrics_listen is None and off.otlp_endpoint is None


def test_values_are_taken(tmp_path: Path) -> None:
    s = load_settings({
        "GIG_DATA_DIR": str(tmp_path), "GIG_METRICS_LISTEN": "[::1]:9464",
        "GIG_OTLP_ENDPOINT": "https://otel.example:4318", "GIG_OTLP_SAMPLE_RATIO": "0.25",
        "GIG_LOG_FORMAT": "JSON",
    })  # fmt: skip
    assert s.metrics_listen == "[::1]:9464" and s.otlp_endpoint == "https://otel.example:4318"
    assert s.otlp_sample_ratio == 0.25 and s.log_format == "json"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"GIG_METRICS_LISTEN": "9464"}, "GIG_METRICS_LISTEN: expected HOST:PORT"),
        ({"GIG_METRICS_LISTEN": "metrics.example:9464"}, "GIG_METRICS_LISTEN"),
        ({"GIG_METRICS_LISTEN": "127.0.0.1:0"}, "GIG_METRICS_LISTEN: port"),
        ({"GIG_METRICS_LISTEN": "127.0.0.1:8080"}, "must differ from GIG_LISTEN"),
        ({"GIG_OTLP_ENDPOINT": "grpc://collector:4317"}, "GIG_OTLP_ENDPOINT"),
        ({"GIG_OTLP_ENDPOINT": "https://user:pw@collector"}, "GIG_OTLP_ENDPOINT: a URL with"),
        ({"GIG_OTLP_SAMPLE_RATIO": "1.5"}, "GIG_OTLP_SAMPLE_RATIO"),
        ({"GIG_OTLP_SAMPLE_RATIO": "half"}, "GIG_OTLP_SAMPLE_RATIO"),
        ({"GIG_LOG_FORMAT": "xml"}, "GIG_LOG_FORMAT: expected text or json"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"GIG_DATA_DIR": str(tmp_path), **env})
    assert names in str(err.value) and "\n" not in str(err.value)

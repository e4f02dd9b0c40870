"""The replica benchmark's arithmetic, and (opt-in, slow) the benchmark end to end.

The figures that matter are ratios paired by round and CPU per call summed over rounds;
these tests pin that arithmetic on made-up rounds. The end-to-end run needs PostgreSQL's
server binaries and starts two real replicas, so it is in the slow suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench.replicas import _haproxy_config, _thread_state, summarise

ROOT = Path(__file__).resolve().parents[2]


def batch(calls_per_s: float, p50: float, calls: int = 100, **cpu: float) -> dict[str, Any]:
    wall = calls / calls_per_s
    return {
        "calls": calls,
        "errors": 0,
        "wall_s": wall,
        "p50_ms": p50,
        "p99_ms": 2 * p50,
        "calls_per_s": calls_per_s,
        "cpu_s": cpu,
        "machine_busy_cores": 1.5,
        "machine_steal_cores": 0.0,
    }


def test_ratios_are_paired_by_round_then_the_median_taken() -> None:
    # Round 2 ran on a busy machine: every arm is slow in it, and pairing keeps the
    # ratio what it is in every round (1.5), where a ratio of medians would not.
    rounds = {
        "direct": [batch(400, 10), batch(100, 40), batch(400, 10)],
        "python-1": [batch(200, 20), batch(50, 80), batch(220, 20)],
        "python-2": [batch(300, 15), batch(75, 60), batch(330, 15)],
    }
    summary = summarise(rounds)
    ratios = summary["ratios"]["python"]
    assert ratios["two_over_one_calls_per_s"] == pytest.approx(1.5)
    assert ratios["two_over_one_p50"] == pytest.approx(0.75)
    assert ratios["one_over_direct_calls_per_s"] == pytest.approx(0.5)
    assert ratios["two_over_direct_calls_per_s"] == pytest.approx(0.75)
    assert summary["python-2"]["calls_per_s"] == 300
    assert "haproxy" not in summary["ratios"]  # an arm not run has no ratio


def test_cpu_per_call_is_summed_over_rounds_before_dividing() -> None:
    rounds = {
        "direct": [
            batch(100, 1, calls=100, **{"replica 0": 0.2, "front": 0.0}),
            batch(100, 1, calls=300, **{"replica 0": 0.4, "front": 0.0}),
        ]
    }
    entry = summarise(rounds)["direct"]
    assert entry["cpu_ms_per_call"]["replica 0"] == pytest.approx(600 / 400)
    assert entry["cpu_ms_per_call_total"] == pytest.approx(1.5)
    assert entry["cores_busy"] == pytest.approx(0.6 / 4.0)  # 0.6 CPU-s over 4 s of wall
    assert entry["calls"] == 400


def test_haproxy_balances_every_backend_in_turn() -> None:
    config = _haproxy_config(9000, [9001, 9002])
    assert "bind 127.0.0.1:9000" in config
    assert "balance roundrobin" in config
    assert "server r0 127.0.0.1:9001" in config and "server r1 127.0.0.1:9002" in config


@pytest.mark.parametrize(
    ("wait", "state"),
    [("select.epoll().poll(30)", "idle"), ("select.poll().poll(30000)", "poll")],
)
def test_a_main_thread_is_seen_idle_in_epoll_or_waiting_in_poll(wait: str, state: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", f"import select; {wait}"])
    try:
        deadline = time.monotonic() + 10
        seen = _thread_state(child.pid)
        while seen != state and time.monotonic() < deadline:
            time.sleep(0.02)
            seen = _thread_state(child.pid)
        assert seen == state
    finally:
        child.kill()
        child.wait()


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_without_errors(tmp_path: Path) -> None:
    from tests.support.databases import _pg_bin

    if _pg_bin() is None:
        pytest.skip("PostgreSQL server binaries are missing (apt-get install postgresql)")
    out = tmp_path / "replicas.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.replicas", "--calls", "3", "--rounds", "1",
         "--fronts", "python", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["errors"] == {}
    assert set(result["summary"]) == {"direct", "python-1", "python-2", "ratios"}
    for arm in ("direct", "python-1", "python-2"):
        assert result["summary"][arm]["calls"] == 32 * 3
    assert "front" in result["summary"]["python-2"]["cpu_ms_per_call"]
    assert "front" not in result["summary"]["direct"]["cpu_ms_per_call"]

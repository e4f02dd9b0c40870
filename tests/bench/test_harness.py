"""The benchmark harness measures real answers and refuses wrong ones.

Runs the benchmark's own server over stdio and over the SDK's Streamable HTTP, through
the harness's stdio and h11 clients, and the harness itself end to end on a small plan.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bench.runner import Tally, Workload, run_batch
from bench.stdio_client import StdioClient

from bench import arms, http_client, procs, procstat, wire

ROOT = Path(__file__).resolve().parents[2]
CPUS = set(os.sched_getaffinity(0))


def answer(call: wire.Call, text: str, **extra: object) -> dict[str, object]:
    result = {"content": [{"type": "text", "text": text}], **extra}
    return {"jsonrpc": "2.0", "id": call.id, "result": result}


class TestAnswerChecks:
    call = wire.Call(id=7, tool="blob", size=64, nonce="0123abcd")

    def test_the_exact_answer_passes(self) -> None:
        self.call.check(answer(self.call, "0123abcd" + "x" * 48 + "0123abcd"))

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("0123abcd" + "x" * 47 + "0123abcd", "text of 63"),
            ("0123abcd" + "x" * 49 + "0123abcd", "text of 65"),
            ("ffffffff" + "x" * 48 + "0123abcd", "nonce"),
            ("0123abcd" + "x" * 48 + "ffffffff", "nonce"),
        ],
    )
    def test_a_wrong_size_or_nonce_is_an_error(self, text: str, why: str) -> None:
        with pytest.raises(wire.WrongAnswer, match=why):
            self.call.check(answer(self.call, text))

    def test_an_answer_to_another_request_is_an_error(self) -> None:
        other = wire.Call(id=8, tool="blob", size=64, nonce="0123abcd")
        with pytest.raises(wire.WrongAnswer, match="answer id 8"):
            self.call.check(answer(other, "0123abcd" + "x" * 48 + "0123abcd"))

    def test_a_tool_error_or_json_rpc_error_is_an_error(self) -> None:
        good = "0123abcd" + "x" * 48 + "0123abcd"
        with pytest.raises(wire.WrongAnswer, match="tool error"):
            self.call.check(answer(self.call, good, isError=True))
        with pytest.raises(wire.WrongAnswer, match="no result"):
            self.call.check({"jsonrpc": "2.0", "id": 7, "error": {"code": -32601}})

    def test_ids_are_never_reused(self) -> None:
        ids = wire.Ids()
        assert len({ids() for _ in range(1000)}) == 1000


class TestFastServerOverStdio:
    @pytest.mark.parametrize("modern", [False, True], ids=["legacy", "2026-07-28"])
    async def test_blob_is_exactly_the_size_asked_with_the_nonce(self, modern: bool) -> None:
        client = StdioClient(arms.server_argv(), CPUS, wire.Ids())
        await client.start(modern=modern)
        try:
            for size in (200, 16 * 1024, 1024 * 1024):
                call = wire.Call(id=client.ids(), tool="blob", size=size, nonce=wire.nonce())
                await asyncio.wait_for(client.call(call, modern=modern), 20)
            # Concurrent calls on one pipe come back to their own requests.
            calls = [wire.Call(client.ids(), "blob", 300 + i, wire.nonce()) for i in range(32)]
            await asyncio.wait_for(asyncio.gather(*(client.call(c, modern) for c in calls)), 20)
            assert client.stray == 0
        finally:
            await client.close()

    async def test_bad_arguments_get_a_tool_error_not_a_crash(self) -> None:
        client = StdioClient(arms.server_argv(), CPUS, wire.Ids())
        await client.start()
        try:
            call = wire.Call(id=client.ids(), tool="blob", size=4, nonce="0123abcd")
            with pytest.raises(wire.WrongAnswer, match="tool error"):
                await asyncio.wait_for(client.call(call), 20)
            await asyncio.wait_for(client.call(wire.Call(client.ids(), "blob", 200, "ok1")), 20)
        finally:
            await client.close()

    async def test_the_listing_server_has_its_hundred_tools(self) -> None:
        client = StdioClient(arms.list_server_argv(3), CPUS, wire.Ids())
        await client.start()
        try:
            req = client.ids()
            message = await asyncio.wait_for(
                client.send(req, wire.request(req, "tools/list", None, False)), 20
            )
            names = wire.tool_names(wire.check_result(message, req))
            assert len(names) == arms.LIST_TOOLS_EACH
            assert {f"3:{n}" for n in names} <= arms.expected_list_names(prefixed=False)
        finally:
            await client.close()


@pytest.fixture
async def sdk_server(tmp_path: Path) -> AsyncIterator[arms.HttpSut]:
    ctx = arms.Context(sut_cpus=CPUS, ids=wire.Ids(), work=tmp_path)
    sut = arms.sdk_sut(ctx)
    await asyncio.to_thread(sut.start, ctx)
    try:
        yield sut
    finally:
        await asyncio.to_thread(sut.stop)


class TestHttpClientAgainstTheSdk:
    @pytest.mark.parametrize("modern", [False, True], ids=["legacy-session", "stateless"])
    async def test_calls_on_keep_alive_connections(
        self, sdk_server: arms.HttpSut, modern: bool, tmp_path: Path
    ) -> None:
        ctx = arms.Context(sut_cpus=CPUS, ids=wire.Ids(), work=tmp_path)
        arm = arms.HttpArm(ctx, sdk_server, "sdk", "test", modern)
        await asyncio.wait_for(arm.start(), 20)
        if not modern:
            assert arm.client.session_id
        try:
            tally = Tally()
            await run_batch(arm, Workload("t", "call", 16 * 1024, 4, 40), tally, 20, 20)
            assert (tally.errors, len(tally.latencies_ns)) == (0, 40), tally.first_error
            # One connection per worker, reused for every call.
            assert len(arm.pool) == 4
            churn = Tally()
            await run_batch(arm, Workload("c", "churn", 0, 1, 3), churn, 20, 20)
            assert (churn.errors, len(churn.latencies_ns)) == (0, 3), churn.first_error
        finally:
            await arm.stop()

    async def test_a_server_that_closed_an_idle_connection_is_reconnected(
        self, sdk_server: arms.HttpSut
    ) -> None:
        endpoint = sdk_server.endpoint()
        conn = http_client.Connection(endpoint)
        client = http_client.McpClient(endpoint, wire.Ids(), modern=True)
        await client.open(conn)
        assert conn._writer is not None
        # Simulate the server's idle timeout: the peer side of our socket goes away.
        sock = conn._writer.get_extra_info("socket")
        sock.shutdown(2)
        await client.call(conn, wire.Call(client.ids(), "blob", 200, wire.nonce()))
        await conn.close()

    async def test_a_wrong_path_is_an_error_not_a_success(self, sdk_server: arms.HttpSut) -> None:
        endpoint = sdk_server.endpoint("/nope")
        conn = http_client.Connection(endpoint)
        client = http_client.McpClient(endpoint, wire.Ids(), modern=True)
        with pytest.raises(http_client.HttpError, match="HTTP 404"):
            await client.open(conn)
        await conn.close()


def test_stop_group_ends_a_tree_whose_child_left_the_group(tmp_path: Path) -> None:
    # A parent that starts a child in a session of its own, as some peers do.
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " start_new_session=True)\n"
        "time.sleep(60)\n"
    )
    proc = procs.spawn([sys.executable, "-c", script], CPUS, tmp_path / "log")
    deadline = time.monotonic() + 10
    while len(procstat.tree(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    tree = procstat.tree(proc.pid)
    assert len(tree) == 2
    procs.stop_group(proc.pid, grace=2)
    time.sleep(0.1)
    assert not [p for p in tree if Path(f"/proc/{p}").exists() and not _zombie(p)]


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_procstat_sees_the_cpu_of_a_busy_tree(tmp_path: Path) -> None:
    # Burn 0.3 s of CPU (not of wall time: the machine may be busy), say so, then idle.
    burn = (
        "import time\nwhile time.process_time() < 0.3: pass\n"
        "print('burnt', flush=True)\ntime.sleep(60)"
    )
    log = tmp_path / "log"
    proc = procs.spawn([sys.executable, "-c", burn], CPUS, log)
    try:
        deadline = time.monotonic() + 30
        while "burnt" not in log.read_text():
            assert time.monotonic() < deadline, "the busy child never finished burning"
            time.sleep(0.02)
        sample = procstat.sample(proc.pid)
        assert sample.cpu_ns >= 300_000_000 - 10_000_000  # one clock tick of rounding
        assert sample.rss_bytes > 1_000_000
        assert sample.processes == 1
    finally:
        procs.stop_group(proc.pid, grace=1)


@pytest.mark.root
def test_a_namespaced_listener_is_reachable_only_through_the_namespace() -> None:
    from bench.netns import NetNamespace

    ns = NetNamespace(f"gigbench-test-{os.getpid()}")
    ns.create()
    proc = None
    try:
        port = 18765
        code = (
            "import socket,time\ns=socket.socket()\n"
            f"s.bind(('0.0.0.0',{port}))\ns.listen()\ntime.sleep(30)"
        )
        proc = subprocess.Popen([*ns.exec_prefix(), sys.executable, "-c", code])
        deadline = time.monotonic() + 10
        while True:
            try:
                ns.connect("127.0.0.1", port).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "listener in the namespace never came up"
                time.sleep(0.05)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        ns.delete()
    assert not Path(ns.path).exists()


def test_the_bench_command_writes_checked_results(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--arms", "direct,sdk-modern",
         "--workloads", "call,churn", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["errors_total"] == 0
    for size in ("200B", "16KB", "1MB"):
        for c in (1, 8, 32):
            for arm in ("direct", "sdk-modern"):
                figures = result["results"][f"call/{size}/c{c}"][arm]
                assert figures["ok"] > 0
                assert figures["p50_ms"] <= figures["p99_ms"]
                assert figures["per_s"] > 0
    # Churn is bounded by a time limit as well as a count: on a loaded machine a stdio
    # session per operation may not all fit, but none may fail and some must run.
    assert 0 < result["results"]["churn"]["direct"]["ok"] <= result["plan"]["churn"]
    assert result["meta"]["loadgen_cpus"] != result["meta"]["sut_cpus"] or os.cpu_count() == 1
    # Arms not asked for are simply absent; the targets that need them say n/a.
    assert "gateway" not in result["results"]["call/200B/c1"]
    assert all(check["met"] is None for check in result["targets"])
    assert "targets" in run.stdout

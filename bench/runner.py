"""Workloads and batches: drive an arm with N workers, time each operation, measure the SUT.

Owns the measuring loop. A batch runs ``count`` operations (or stops at its time limit)
over ``concurrency`` workers, records each successful operation's latency, counts every
failed or wrong answer as an error, and reads the SUT's CPU and memory before and after.
It must never run unbounded: every batch has a count and a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.arms import Arm

Op = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class Workload:
    key: str  # e.g. "call/16KB/c8", "list/500", "churn"
    kind: str  # "call" | "list" | "churn"
    size: int = 0
    concurrency: int = 1
    count: int = 0

    def op(self, arm: Arm) -> Op:
        if self.kind == "call":
            size = self.size
            return lambda worker: arm.call(worker, size)
        if self.kind == "list":
            return lambda worker: arm.list_all()
        if self.kind == "churn":
            return lambda worker: arm.churn()
        raise ValueError(self.kind)


@dataclass
class Tally:
    """Everything measured for one (workload, arm), summed over its batches."""

    latencies_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    wall_ns: int = 0
    cpu_ns: int = 0
    loadgen_cpu_ns: int = 0
    rss_max: int = 0
    batches: int = 0


async def run_batch(
    arm: Arm, workload: Workload, tally: Tally, time_limit: float, op_timeout: float
) -> None:
    op = workload.op(arm)
    remaining = workload.count
    deadline = time.monotonic() + time_limit
    latencies: list[int] = []
    errors: list[str] = []

    async def worker(index: int) -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < deadline:
            remaining -= 1
            start = time.perf_counter_ns()
            try:
                await asyncio.wait_for(op(index), op_timeout)
            except Exception as exc:  # every failure is a counted error, never a crash
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            latencies.append(time.perf_counter_ns() - start)

    cpu_before = arm.cpu_ns(workload.kind)
    own_before = time.process_time_ns()
    started = time.perf_counter_ns()
    await asyncio.gather(*(worker(i) for i in range(workload.concurrency)))
    wall = time.perf_counter_ns() - started
    own = time.process_time_ns() - own_before
    cpu_after = arm.cpu_ns(workload.kind)

    tally.latencies_ns.extend(latencies)
    tally.errors += len(errors)
    if errors and tally.first_error is None:
        tally.first_error = errors[0]
    tally.wall_ns += wall
    tally.cpu_ns += max(0, cpu_after - cpu_before)
    tally.loadgen_cpu_ns += own
    tally.rss_max = max(tally.rss_max, arm.rss_bytes(workload.kind))
    tally.batches += 1

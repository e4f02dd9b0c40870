"""Requests a server makes of its client (sampling, elicitation, roots) reach the client
whose call caused them, in either protocol era, and their answers reach the server."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types
import pytest

from tests.support.gateway import GatewayProc
from tests.support.mcp_client import connect, sampler, text_of


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sampling_round_trip(gw: GatewayProc, mode: str) -> None:
    async with connect(gw, "alpha", mode, sampling_callback=sampler("solo")) as c:
        result = await c.call_tool(
            "everything_trigger-sampling-request", {"prompt": "hi", "maxTokens": 5}
        )
    assert "answer-from-solo" in text_of(result)


@pytest.mark.parametrize("modes", [("legacy", "legacy"), ("auto", "auto"), ("legacy", "auto")])
async def test_two_concurrent_clients_each_get_their_own_sampling(
    gw: GatewayProc, modes: tuple[str, str]
) -> None:
    async def one(mode: str, marker: str) -> str:
        async with connect(gw, "alpha", mode, sampling_callback=sampler(marker, 0.05)) as c:
            outs = []
            for i in range(3):
                echo = await c.call_tool("everything_echo", {"message": f"{marker}-{i}"})
                assert f"{marker}-{i}" in text_of(echo)
                r = await c.call_tool(
                    "everything_trigger-sampling-request", {"prompt": marker, "maxTokens": 5}
                )
                outs.append(text_of(r))
            return "\n".join(outs)

    a, b = await asyncio.gather(one(modes[0], "client-a"), one(modes[1], "client-b"))
    assert "answer-from-client-a" in a and "answer-from-client-b" not in a
    assert "answer-from-client-b" in b and "answer-from-client-a" not in b


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_elicitation_round_trip(gw: GatewayProc, mode: str) -> None:
    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(
            action="accept",
            content={
                "name": "Ada",
                "check": True,
                "email": "ada@example.com",
                "integer": 3,
                "number": 1.5,
                "untitledSingleSelectEnum": "option1",
            },
        )

    async with connect(gw, "alpha", mode, elicitation_callback=elicit) as c:
        tools = {t.name for t in (await c.list_tools()).tools}
        assert "everything_trigger-elicitation-request" in tools
        result = await c.call_tool("everything_trigger-elicitation-request", {})
    assert "accept" in text_of(result).lower()


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_progress_notifications_reach_the_caller_with_its_token(
    gw: GatewayProc, mode: str
) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with connect(gw, "alpha", mode) as c:
        result = await c.call_tool(
            "everything_trigger-long-running-operation",
            {"duration": 0.6, "steps": 3},
            progress_callback=on_progress,
        )
    assert not result.is_error
    assert seen == sorted(seen) and len(seen) >= 2

"""The official Python SDK client on a profile's endpoint of a running gateway.

``connect`` opens a :class:`mcp.client.client.Client` over Streamable HTTP with the
profile's token, in the protocol era the test asks for (``mode``); ``text_of`` joins the
text parts of a tool result; ``sampler`` is a sampling callback that says who answered.
Nothing is mocked: the client is the SDK's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import mcp_types as types
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support.gateway import GatewayProc


@asynccontextmanager
async def connect(gw: GatewayProc, profile: str, mode: str, **kw: Any) -> AsyncIterator[Client]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {gw.tokens[profile]}"})
    async with (
        http,
        Client(streamable_http_client(gw.url(profile), http_client=http), mode=mode, **kw) as c,
    ):
        yield c


def sampler(marker: str, delay: float = 0.0) -> Any:
    """A client's sampling callback that answers ``answer-from-<marker>`` (after
    ``delay`` seconds: to keep concurrent calls in flight at once)."""

    async def sample(
        context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        await asyncio.sleep(delay)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"answer-from-{marker}"),
            model="test-model",
            stop_reason="endTurn",
        )

    return sample


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))

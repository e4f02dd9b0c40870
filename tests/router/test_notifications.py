"""Notifications a server starts reach the right clients on the channel their protocol
revision uses: resource updates for subscribers, log messages at the level asked for,
list changes after the gateway refreshed its view."""

from __future__ import annotations

import asyncio
from typing import Any

import mcp_types as types

from gigmcp.mcp.versions import LOG_LEVELS
from tests.support.gateway import GatewayProc
from tests.support.mcp_client import connect

STATIC = "everything+demo://resource/static/document/architecture.md"


async def test_legacy_subscriber_gets_updates_with_the_prefixed_uri(gw: GatewayProc) -> None:
    updated: asyncio.Queue[str] = asyncio.Queue()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            await updated.put(str(message.params.uri))

    async with connect(gw, "alpha", "legacy", message_handler=on_message) as c:
        uri = next(
            str(r.uri)
            for r in (await c.list_resources()).resources
            if str(r.uri).startswith("everything+")
        )
        await c.subscribe_resource(uri)
        await c.call_tool("everything_toggle-subscriber-updates", {})
        try:
            got = await asyncio.wait_for(updated.get(), 15)
        finally:
            await c.call_tool("everything_toggle-subscriber-updates", {})
        assert got == uri


async def test_modern_listen_stream_gets_updates_tagged_with_its_subscription(
    gw: GatewayProc,
) -> None:
    async with connect(gw, "alpha", "auto") as c:
        uri = next(
            str(r.uri)
            for r in (await c.list_resources()).resources
            if str(r.uri).startswith("everything+")
        )
        async with c.listen(resource_subscriptions=[uri]) as sub:
            assert list(sub.honored.resource_subscriptions or []) == [uri]
            await c.call_tool("everything_toggle-subscriber-updates", {})
            try:
                event = await asyncio.wait_for(sub.__anext__(), 15)
            finally:
                await c.call_tool("everything_toggle-subscriber-updates", {})
        assert uri in repr(event)


async def test_log_messages_reach_a_legacy_client_that_set_a_level(gw: GatewayProc) -> None:
    logs: asyncio.Queue[Any] = asyncio.Queue()

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        await logs.put(params)

    async with connect(gw, "alpha", "legacy", logging_callback=on_log) as c:
        await c.set_logging_level("debug")
        await c.call_tool("everything_toggle-simulated-logging", {})
        try:
            first = await asyncio.wait_for(logs.get(), 15)
        finally:
            await c.call_tool("everything_toggle-simulated-logging", {})
    assert first.level in LOG_LEVELS

"""A server whose connection closes just before the gateway writes a request on it: the
client gets a JSON-RPC error with the fixed "unavailable (ref …)" message, never an
HTTP 500 or a broken stream.

The gateway holds a connection across an await (here: while it asks the client the
server's question, then retries the call with the answer); the server can exit in
between. ``tests/servers/quitter.py`` exits as soon as it has asked; the client answers
only once the gateway has logged the exit, so the retry meets a closed connection every
time, without a sleep to race.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.gateway import SERVERS, gateway
from tests.support.mcp_client import connect

REF = re.compile(r"^Server 'quitter' is unavailable \(ref ([0-9a-f]{8})\)$")


async def test_attack_a_server_that_exits_while_its_client_answers_gets_a_jsonrpc_error(
    tmp_path: Path,
) -> None:
    with gateway(tmp_path) as gw:
        gw.add_server("quitter", (sys.executable, str(SERVERS / "quitter.py")))
        gw.profile("pp", "quitter")
        gw.start()
        asked: list[str] = []

        async def answer_once_it_is_gone(context: Any, params: Any) -> types.ElicitResult:
            asked.append(params.message)
            # The exit is logged after the gateway closed the connection: the event.
            seen = await asyncio.to_thread(
                gw.wait_for_server_log, "quitter", "pp", "exited with code"
            )
            assert seen, gw.server_logs("quitter", "pp")
            return types.ElicitResult(action="accept", content={"ok": True})

        async with connect(gw, "pp", "legacy", elicitation_callback=answer_once_it_is_gone) as c:
            try:
                # The bound only turns a hung stream into a failure.
                async with asyncio.timeout(60):
                    await c.call_tool("quitter_ask", {})
            except MCPError as exc:
                error = exc.error
            except TimeoutError:
                pytest.fail(f"the call was never answered; the gateway: {gw.output()[-3000:]}")
            else:
                pytest.fail("the call succeeded on a server that had exited")
            assert asked == ["Go on?"], error
            found = REF.match(error.message)
            assert found is not None, error
            # The same session keeps working: the gateway did not fall over.
            assert "quitter_ask" in {t.name for t in (await c.list_tools()).tools}
        ref = found.group(1)
        # The cause is in the gateway's log under the reference, not in the reply.
        assert any(ref in line and "quitter" in line for line in gw.output().splitlines()), (
            gw.output()[-3000:]
        )

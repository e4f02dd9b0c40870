"""A remote MCP server for the tests: the official Python SDK's ``MCPServer`` over
Streamable HTTP on HTTPS (uvicorn), optionally a protected resource.

    python remote_sdk.py --host H --port P --cert C --key K --url URL
                         [--issuer ISS --jwks FILE --scope S] [--deny FILE]

With ``--issuer`` it is an OAuth protected resource as the MCP authorization
specification has it (the SDK serves the RFC 9728 metadata and answers 401 with its
``resource_metadata``): it takes only JWT access tokens signed by a key of ``--jwks``
(a file the test writes from the issuer's JWKS), issued by ``--issuer``, whose audience
is ``--url``, with scope ``--scope``. ``--deny`` names a file of SHA-256 hex digests of
tokens to refuse anyway (a test's way to make a good token go stale mid-session).
``--describe`` names a file whose text, when there is any, is what ``echo`` says of itself
from the next listing on (a test's way to change a tool after it was pinned).

Tools: ``whoami`` (the token's subject and a digest of the token, never the token),
``echo``, ``ask`` (elicits an answer from the client) and ``steps`` (progress and a log
message to the caller). Prints ``ready`` on stdout when it listens. Every request's method, path and
status goes to stderr (uvicorn's access log), and so does every token verdict.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import RequestParams
from pydantic import BaseModel


class JwtVerifier:
    def __init__(
        self, issuer: str, jwks: Path, audience: str, scope: str, deny: Path | None
    ) -> None:
        self.issuer, self.jwks, self.audience, self.scope, self.deny = (
            issuer,
            jwks,
            audience,
            scope,
            deny,
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if self.deny is not None and self.deny.exists() and digest in self.deny.read_text().split():
            print(f"token {digest[:12]} refused: denied by the test", file=sys.stderr, flush=True)
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token, KeySet.import_key_set(json.loads(self.jwks.read_text()))
            ).claims
        except Exception as exc:  # a token that does not verify is refused, whatever the cause
            print(f"token {digest[:12]} refused: {type(exc).__name__}", file=sys.stderr, flush=True)
            return None
        problems = []
        if claims.get("iss") != self.issuer:
            problems.append("issuer")
        if claims.get("aud") != self.audience:
            problems.append(f"audience {claims.get('aud')!r}")
        if claims.get("exp", 0) < time.time():
            problems.append("expired")
        scopes = str(claims.get("scope", "")).split()
        if self.scope not in scopes:
            problems.append("scope")
        if problems:
            print(
                f"token {digest[:12]} refused: {', '.join(problems)}", file=sys.stderr, flush=True
            )
            return None
        print(f"token {digest[:12]} accepted", file=sys.stderr, flush=True)
        return AccessToken(token=token, client_id=str(claims.get("client_id", "")), scopes=scopes,
                           expires_at=int(claims["exp"]), resource=self.audience,
                           subject=str(claims.get("sub")))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--host", "--cert", "--key", "--url"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer")
    parser.add_argument("--jwks", type=Path)
    parser.add_argument("--scope", default="mcp:tools")
    parser.add_argument("--deny", type=Path)
    parser.add_argument("--describe", type=Path)
    parser.add_argument(
        "--legacy", action="store_true", help="answer server/discover as a legacy server does"
    )
    args = parser.parse_args()

    kwargs: dict[str, Any] = {}
    if args.issuer:
        kwargs["token_verifier"] = JwtVerifier(
            args.issuer, args.jwks, args.url, args.scope, args.deny
        )
        kwargs["auth"] = AuthSettings(
            issuer_url=args.issuer, resource_server_url=args.url, required_scopes=[args.scope]
        )
    describe: Path | None = args.describe

    class Server(MCPServer):
        async def list_tools(self) -> list[Any]:
            tools = await super().list_tools()
            said = describe.read_text().strip() if describe and describe.exists() else ""
            if said:
                tools = [t.model_copy(update={"description": said}) if t.name == "echo" else t
                         for t in tools]  # fmt: skip
            return tools

    server = Server("remote-sdk", **kwargs)

    @server.tool()
    def whoami() -> str:
        """Who the request's token belongs to."""
        token = get_access_token()
        if token is None:
            return "anonymous"
        return f"sub={token.subject} token={hashlib.sha256(token.token.encode()).hexdigest()[:12]}"

    @server.tool()
    def echo(text: str) -> str:
        """The text, back."""
        return f"echo:{text}"

    class Colour(BaseModel):
        colour: str

    @server.tool()
    async def ask(ctx: Context) -> str:
        """Asks the user a question (elicitation, a server-to-client request)."""
        answer = await ctx.elicit("Which colour?", schema=Colour)
        return f"answer:{answer.action}:{answer.data.colour if answer.data else ''}"

    @server.tool()
    async def steps(ctx: Context, n: int = 3) -> str:
        """Reports progress n times (notifications to the caller) and a log line."""
        await ctx.info("about to count")
        for i in range(n):
            await ctx.report_progress(i + 1, n)
        return f"counted:{n}"

    if args.legacy:
        # A server of the 2025 generation only: it does not know server/discover, so a
        # dual-era client falls back to initialize and a session.
        async def no_discover(ctx: Any, params: Any) -> Any:
            raise MCPError(code=-32601, message="Method not found: server/discover")

        server._lowlevel_server.add_request_handler("server/discover", RequestParams, no_discover)

    host = args.url.split("//", 1)[1].split("/", 1)[0]
    app = server.streamable_http_app(
        streamable_http_path="/" + args.url.split("//", 1)[1].split("/", 1)[1],
        transport_security=TransportSecuritySettings(allowed_hosts=[host, host.split(":")[0]]),
        host=args.host,
    )
    # No access log: it goes to stdout, which nobody reads after "ready" (a full pipe
    # would stop the server); the token verdicts on stderr say what a test needs.
    config = uvicorn.Config(app, host=args.host, port=args.port, ssl_certfile=args.cert,
                            ssl_keyfile=args.key, log_level="info", access_log=False)  # fmt: skip
    srv = uvicorn.Server(config)
    original = srv.startup

    async def startup(*a: Any, **kw: Any) -> None:
        await original(*a, **kw)
        print("ready", flush=True)

    srv.startup = startup  # type: ignore[method-assign]
    srv.run()


if __name__ == "__main__":
    main()

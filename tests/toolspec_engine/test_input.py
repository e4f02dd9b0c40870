"""The engine's own checks of its input and environment, each with its message.

The gateway validates toolspecs before this point; the engine still refuses what it
could not serve safely, because it runs on the untrusted side. The loader is called in
process for the table of refusals, and the real command is run for start-up failures
(exit status 2, one line on stderr, nothing on stdout, no secret repeated).
"""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gigmcp.toolspec_engine import launch
from gigmcp.toolspec_engine.spec import Credential, InputError, load_input
from tests.support.toolspec_demo import demo_input
from tests.support.toolspec_session import jail_command, write_input

Doc = dict[str, Any]


def base() -> Doc:
    return demo_input(443)


def _tool(doc: Doc, name: str) -> dict[str, Any]:
    return next(t for t in doc["spec"]["tools"] if t["name"] == name)


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        keys = path.split(".")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return apply


def _add_param(tool: str, param: dict[str, Any]) -> Callable[[Doc], None]:
    return lambda doc: _tool(doc, tool)["params"].append(param)


REFUSALS: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown top field", _set("extra", 1), "input: unknown field 'extra'"),
    ("unknown spec field", _set("spec.metod", "GET"), "spec: unknown field 'metod'"),
    ("schema version", _set("spec.schemaVersion", 2), "spec.schemaVersion must be 1, got 2"),
    ("http base", _set("spec.baseUrl", "http://api.example.com"), "the scheme must be https"),
    (
        "base path",
        _set("spec.baseUrl", "https://api.example.com/v1"),
        "must be https://<host> with no path or query",
    ),
    ("base query", _set("spec.baseUrl", "https://api.example.com?x=1"), "with no path or query"),
    (
        "base userinfo",
        _set("spec.baseUrl", "https://u:p@api.example.com"),
        "must not carry user information",
    ),
    (
        "base uppercase",
        _set("spec.baseUrl", "https://API.example.com"),
        "the host must be a lowercase DNS name",
    ),
    ("base ip6", _set("spec.baseUrl", "https://[::1]"), "the host must be a lowercase DNS name"),
    (
        "tool base",
        _set("spec.tools.0.baseUrl", "ftp://x.example.com"),
        "spec.tools[0] (search).baseUrl 'ftp://x.example.com': the scheme must be https",
    ),
    (
        "method",
        _set("spec.tools.0.method", "TRACE"),
        "spec.tools[0] (search).method must be one of GET|POST|PUT|PATCH|DELETE",
    ),
    (
        "relative path",
        _set("spec.tools.0.path", "search"),
        "must start with / and hold visible ASCII only",
    ),
    (
        "space in path",
        _set("spec.tools.0.path", "/a b"),
        "must start with / and hold visible ASCII only",
    ),
    (
        "fragment",
        _set("spec.tools.0.path", "/a#b"),
        "must start with / and hold visible ASCII only, no #",
    ),
    ("brace", _set("spec.tools.0.path", "/a/{b"), "has an unbalanced brace"),
    (
        "hole without param",
        _set("spec.tools.0.path", "/s/{nope}"),
        "placeholder {nope} has no in:path param",
    ),
    (
        "param without hole",
        _set("spec.tools.3.path", "/files/{folder}"),
        "in:path param 'name' does not appear in the path",
    ),
    (
        "optional path param",
        _set("spec.tools.3.params.0.required", False),
        "a path param must be required",
    ),
    (
        "body on GET",
        _add_param("search", {"name": "b", "in": "body", "type": "string"}),
        "a body param is not allowed on GET",
    ),
    (
        "location",
        _add_param("search", {"name": "b", "in": "cookie", "type": "string"}),
        "(b).in must be one of path|query|header|body",
    ),
    (
        "type",
        _add_param("search", {"name": "b", "in": "query", "type": "date"}),
        "(b).type must be one of string|integer|number|boolean|object|array",
    ),
    (
        "required not bool",
        _add_param("search", {"name": "b", "in": "query", "type": "string", "required": "yes"}),
        "(b).required must be true or false",
    ),
    (
        "duplicate param",
        _add_param("search", {"name": "q", "in": "header", "type": "string"}),
        "param 'q' appears twice",
    ),
    (
        "header host",
        _add_param("search", {"name": "Host", "in": "header", "type": "string"}),
        "'Host' is a header the engine sets itself",
    ),
    (
        "header length",
        _add_param("search", {"name": "content-length", "in": "header", "type": "string"}),
        "is a header the engine sets itself",
    ),
    (
        "header name",
        _add_param("search", {"name": "X Bad:1", "in": "header", "type": "string"}),
        "'X Bad:1' is not an HTTP header name",
    ),
    (
        "credential header",
        _add_param("search", {"name": "authorization", "in": "header", "type": "string"}),
        "header 'authorization' is the credential's header",
    ),
    (
        "duplicate tool",
        lambda d: d["spec"]["tools"].append(copy.deepcopy(d["spec"]["tools"][0])),
        "tool name 'search' appears twice",
    ),
    ("no tools", _set("spec.tools", []), "spec.tools must be a non-empty list"),
    (
        "env name",
        _set("credentials.0.env", "BAD-NAME"),
        "input.credentials[0].env 'BAD-NAME' is not an environment variable name",
    ),
    (
        "format",
        _set("credentials.0.format", "Bearer"),
        "input.credentials[0].format must contain {token}",
    ),
    (
        "format newline",
        _set("credentials.0.format", "Bearer {token}\r\nX: 1"),
        "input.credentials[0].format holds a control character",
    ),
    (
        "two credentials one header",
        _set("credentials.1.header", "authorization"),
        "header 'authorization' is set by another credential",
    ),
    (
        "no header, no auth",
        _set("credentials.0", {"env": "X"}),
        "input.credentials[0]: header and format are required (the spec has no auth)",
    ),
    (
        "enabled unknown",
        _set("tools", ["search", "ghost"]),
        "input.tools: 'ghost' is not a tool of this toolspec",
    ),
    ("enabled type", _set("tools", "search"), "input.tools must be null or a list of tool names"),
    (
        "timeout",
        _set("limits", {"timeoutSeconds": 0}),
        "input.limits.timeoutSeconds must be in (0, 300]",
    ),
    (
        "cap",
        _set("limits", {"maxResponseBytes": 10}),
        "input.limits.maxResponseBytes must be in [1024, 67108864]",
    ),
]


@pytest.mark.parametrize(("case", "mutate", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_the_loader_refuses_with_a_message(
    case: str, mutate: Callable[[Doc], None], message: str
) -> None:
    doc = base()
    load_input(json.dumps(doc).encode())  # the unmodified input is fine
    mutate(doc)
    with pytest.raises(InputError) as caught:
        load_input(json.dumps(doc).encode())
    assert message in str(caught.value)


def test_not_json_at_all() -> None:
    with pytest.raises(InputError, match=r"the input is not JSON: Expecting value at line 1"):
        load_input(b"spec: yaml")
    with pytest.raises(InputError, match=r"the input holds NaN, which is not JSON"):
        load_input(b'{"spec": NaN}')
    with pytest.raises(InputError, match=r"the input is not UTF-8 \(byte 0\)"):
        load_input(b"\xff{}")
    with pytest.raises(InputError, match=r"input: 'spec' is required"):
        load_input(b"{}")


def test_an_entrusted_credential_takes_header_and_format_from_the_spec_auth() -> None:
    doc = base()
    doc["spec"]["auth"] = {"header": "X-Token", "format": "Token {token}"}
    doc["credentials"] = [{"env": "SERVICE_KEY"}]
    engine = load_input(json.dumps(doc).encode())
    assert engine.credentials == (Credential("X-Token", "Token {token}", "SERVICE_KEY"),)
    # A header param may not take the auth header either.
    _tool(doc, "search")["params"].append({"name": "x-token", "in": "header", "type": "string"})
    with pytest.raises(InputError, match="header 'x-token' is the credential's header"):
        load_input(json.dumps(doc).encode())


def test_enabled_tools_and_null_optionals() -> None:
    doc = base()
    doc["tools"] = ["fail", "search"]
    doc["spec"]["tools"][0]["baseUrl"] = None
    doc["spec"]["tools"][0]["encoding"] = None
    doc["spec"]["tools"][6]["params"] = None
    engine = load_input(json.dumps(doc).encode())
    assert [t.name for t in engine.tools] == ["search", "fail"]  # the spec's order


def test_launch_checks_the_input_on_the_gateway_side() -> None:
    spec = base()["spec"]
    data = launch.engine_input(spec, [{"header": "A", "format": "{token}", "env": "V"}], ["search"])
    assert json.loads(data)["tools"] == ["search"]
    spec["baseUrl"] = "http://plain.example.com"
    with pytest.raises(InputError, match="the scheme must be https"):
        launch.engine_input(spec, [], None)
    assert launch.command("/usr/bin/python3", "/opt/engine", "/run/in.json") == (
        "/usr/bin/python3",
        "-I",
        "-S",
        "/opt/engine",
        "/run/in.json",
    )
    assert Path(launch.ENGINE_DIR, "__main__.py").is_file()


def run_engine(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=30
    )


def test_start_up_failures_exit_2_with_one_line(tmp_path: Path) -> None:
    good = write_input(tmp_path, base())
    bad = base()
    bad["spec"]["baseUrl"] = "http://api.example.com"
    cases = [
        (
            jail_command(tmp_path / "missing.json"),
            {},
            f"cannot read the input {tmp_path / 'missing.json'}: No such file or directory",
        ),
        (
            jail_command(write_input(tmp_path, bad)),
            {},
            "spec.baseUrl 'http://api.example.com': the scheme must be https",
        ),
        (
            jail_command(good),
            {"SSL_CERT_FILE": "/nonexistent/ca.pem"},
            "SSL_CERT_FILE=/nonexistent/ca.pem: cannot load the CA bundle (No such file or directory)",
        ),
        (
            jail_command(good),
            {"HTTPS_PROXY": "http://user:hunter2-secret@10.0.0.1:3128"},
            "HTTPS_PROXY carries user information, which the engine does not send",
        ),
        (
            jail_command(good),
            {"HTTPS_PROXY": "socks5://10.0.0.1:1080"},
            "HTTPS_PROXY must be http://<host>:<port>",
        ),
    ]
    for argv, env, message in cases:
        done = run_engine(argv, env)
        assert done.returncode == 2, done.stderr
        assert done.stdout == ""
        assert done.stderr == f"gigmcp-toolspec-engine: {message}\n"
        assert "hunter2" not in done.stderr

    usage = run_engine(jail_command(good)[:-1], {})
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: python3 -m gigmcp.toolspec_engine INPUT.json")


def test_the_package_imports_only_the_standard_library() -> None:
    """Every import, in every module, even those on paths the other tests do not take:
    the jail has nothing else to offer."""
    for path in sorted(Path(launch.ENGINE_DIR).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", (path.name, name)

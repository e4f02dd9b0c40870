"""A server that cannot run in the jail says why, wherever the operator looks first.

The case from the field: a virtual environment made from a Python under /root (pyenv's),
which the jail's user cannot enter. Here the same thing is built for real (a Python with
its own prefix inside a 0700 home folder, a venv made from it, a tiny server) and must
be named — the interpreter, the folder that locks it, what to do — by ``gigmcp server
add``, by the first launch (in ``gigmcp server logs``), and by ``gigmcp doctor``; the
client gets only the fixed message with a reference. The other causes a launch can fail
for (a missing command, a file the jail may not read or execute, a missing ELF
interpreter) are each named by the planner, without running anything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gigmcp.sandbox import runtime
from tests.support.gateway import gateway
from tests.support.launchfail import (
    call_tool,
    error_ref,
    private_python,
    scratch,
    server_log,
    venv_server,
)


@pytest.fixture
def root() -> Iterator[Path]:
    with scratch("gig-launch-") as folder:
        yield folder


def test_a_venv_from_a_python_in_a_private_folder_names_the_path_and_the_fix(
    root: Path,
) -> None:
    interpreter, home = private_python(root)
    command = venv_server(root, interpreter)
    with pytest.raises(runtime.RuntimeScanError) as caught:
        runtime.plan(command, None)
    message = str(caught.value)
    assert f"{interpreter} is under {home}" in message, message
    assert "uid 65534" in message and "cannot enter" in message, message
    assert "/usr/bin/python3" in message, message  # what to do instead


def test_a_command_others_may_not_execute_is_named(root: Path) -> None:
    tool = root / "tool"
    shutil.copy2("/usr/bin/true", tool)
    tool.chmod(0o744)
    with pytest.raises(runtime.RuntimeScanError, match=f"{tool} is not executable by the jail"):
        runtime.plan((str(tool),), None)


def test_a_script_others_may_not_read_is_named(root: Path) -> None:
    script = root / "server.py"
    script.write_text("print('hi')\n")
    script.chmod(0o600)
    with pytest.raises(runtime.RuntimeScanError, match=f"{script} is not readable by the jail"):
        runtime.plan(("/usr/bin/python3", str(script)), None)


def test_a_binary_whose_elf_interpreter_is_missing_is_named(root: Path) -> None:
    binary = root / "foreign"
    data = Path("/usr/bin/true").read_bytes()
    loader = next(
        p for p in (b"/lib64/ld-linux-x86-64.so.2", b"/lib/ld-linux-aarch64.so.1") if p in data
    )
    missing = loader[:-1] + b"9"  # same length: the ELF stays well formed
    assert not os.path.exists(missing)
    binary.write_bytes(data.replace(loader, missing))
    binary.chmod(0o755)
    with pytest.raises(runtime.RuntimeScanError, match=f"ELF interpreter {missing.decode()}"):
        runtime.plan((str(binary),), None)


def test_a_binary_whose_shared_library_is_missing_is_named(root: Path) -> None:
    binary = root / "foreign"
    data = Path("/usr/bin/true").read_bytes()
    assert b"libc.so.6\0" in data
    binary.write_bytes(data.replace(b"libc.so.6\0", b"libq.so.6\0"))  # same length
    binary.chmod(0o755)
    with pytest.raises(runtime.RuntimeScanError, match="needs the shared library libq.so.6"):
        runtime.plan((str(binary),), None)


def test_a_missing_command_is_named_with_its_path(root: Path) -> None:
    with pytest.raises(runtime.RuntimeScanError, match=f"command not found: {root}/nothing"):
        runtime.plan((str(root / "nothing"),), None)


@pytest.mark.root
def test_first_server_from_a_private_python_says_why_in_add_launch_logs_and_doctor(
    root: Path, tmp_path: Path
) -> None:
    interpreter, home = private_python(root)
    command = venv_server(root, interpreter)
    with gateway(tmp_path, jailed=True, GIG_SANDBOX_SUBNET="10.214.10.0/28") as gw:
        added = gw.cli("server", "add", "tiny", "--", *command)
        assert f"{interpreter} is under {home}" in added.stderr, added.stderr
        assert "/usr/bin/python3" in added.stderr
        assert "added server tiny" in added.stderr

        doctor = gw.cli("doctor", check=False)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        finding = next(line for line in doctor.stdout.splitlines() if "tiny" in line)
        assert f"{interpreter} is under {home}" in finding, doctor.stdout

        gw.profile("pp", "tiny")
        gw.start()
        reply = call_tool(gw, "pp", "tiny_hello", {"name": "jail"})
        ref = error_ref(reply)
        assert str(home) not in repr(reply)
        logs = server_log(gw, "tiny", "pp")
        cause = next(line for line in logs.splitlines() if ref in line)
        assert f"{interpreter} is under {home}" in cause, logs
        assert "/usr/bin/python3" in cause, logs

        # The cause named is the cause: once the folder can be entered, the same server
        # runs in the same jail.
        home.chmod(0o755)
        ok = call_tool(gw, "pp", "tiny_hello", {"name": "jail"})
        assert ok.get("result", {}).get("content", [{}])[0].get("text") == "hello jail", ok

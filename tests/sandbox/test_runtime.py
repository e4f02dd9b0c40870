"""Which host files a jail sees: exactly the runtime and the package, never a shared
system folder that a server definition happens to point into."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gigmcp.core.launch import JailLimits
from gigmcp.sandbox import runtime
from tests.support.gateway import EVERYTHING


def test_a_node_server_sees_node_its_libraries_and_its_node_modules() -> None:
    plan = runtime.plan(EVERYTHING, None)
    assert plan.kind == "node"
    assert any(p.endswith("/node_modules") for p in plan.ro_paths)
    assert "/usr/bin/node" in plan.ro_paths
    assert all(
        p.startswith(("/usr/", "/work", "/tmp/")) or p.endswith("node_modules")
        for p in plan.ro_paths
    ), plan.ro_paths
    assert not {"/", "/etc", "/usr", "/tmp", "/root"} & set(plan.ro_paths)


def test_libraries_are_bound_under_the_names_the_loader_asks_for() -> None:
    plan = runtime.plan(("/usr/bin/python3", "-c", "pass"), None)
    assert any(p.endswith("/libc.so.6") for p in plan.ro_paths)
    assert any(
        p.endswith("ld-linux-x86-64.so.2") or p.endswith("ld-linux-aarch64.so.1")
        for p in plan.ro_paths
    )
    assert (tuple(os.readlink(link) for _t, link in plan.symlinks if link == "/lib")) in (
        (),
        ("usr/lib",),
    )


@pytest.mark.parametrize("cwd", ["/", "/etc", "/tmp", "/root", "/usr"])
def test_attack_a_shared_system_folder_as_the_package_is_refused(cwd: str) -> None:
    with pytest.raises(runtime.RuntimeScanError, match="shared system folder"):
        runtime.plan(("/usr/bin/true",), cwd)


def test_attack_a_script_dropped_in_tmp_does_not_expose_tmp(tmp_path: Path) -> None:
    script = Path("/tmp") / f"gigmcp-loose-{os.getpid()}.py"
    script.write_text("print('hi')\n")
    try:
        with pytest.raises(runtime.RuntimeScanError, match="/tmp is a shared system folder"):
            runtime.plan(("/usr/bin/python3", str(script)), None)
    finally:
        script.unlink()


def test_a_missing_command_is_named() -> None:
    with pytest.raises(runtime.RuntimeScanError, match="command not found on PATH: no-such-server"):
        runtime.plan(("no-such-server",), None)


def test_attack_a_nul_byte_cannot_inject_bwrap_options() -> None:
    from gigmcp.sandbox import jail

    plan = runtime.plan(("/usr/bin/true",), None)
    net = jail.JailNetwork("10.213.0.1", "10.213.0.2", 3128)
    env = jail.environment({"X": "v\0--bind\0/\0/host"}, net)
    with pytest.raises(ValueError, match="NUL"):
        jail.bwrap_args(plan, env, JailLimits(), {}, 3, 4)


def test_attack_library_names_cannot_bind_a_directory() -> None:
    closure = runtime.library_closure(["/usr/bin/true"])
    assert all(os.path.isfile(os.path.realpath(p)) for p in closure)
    assert not any(p.endswith(("/..", "/.")) for p in closure)

"""``gigmcp doctor`` probes for real, and says so when a probe cannot vouch for the host."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gigmcp.sandbox import cgroups, doctor

pytestmark = pytest.mark.root


def test_a_setuid_bubblewrap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "bwrap"
    shutil.copy2(doctor.BWRAP, copy)
    monkeypatch.setattr(doctor, "BWRAP", str(copy))
    assert doctor.check_bwrap().ok, "control: the same binary, not setuid, is fine"
    os.chmod(copy, 0o4755)
    check = doctor.check_bwrap()
    assert not check.ok and "setuid" in (check.problem or "") and "chmod u-s" in check.fix


def test_a_missing_prlimit_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "PRLIMIT", str(tmp_path / "prlimit"))
    check = doctor.check_bwrap()
    assert not check.ok and "prlimit" in (check.problem or "") and "util-linux" in check.fix


def test_user_namespaces_are_probed_with_a_real_jail_as_an_instance_uid() -> None:
    assert doctor.check_user_namespaces().ok


def test_network_namespaces_are_probed_for_real() -> None:
    assert doctor.check_network_namespaces().ok


@pytest.mark.parametrize("mode", ["root", "userns"])
def test_network_namespaces_are_probed_for_real_in_each_mode(mode: str) -> None:
    check = doctor.check_network_namespaces(mode)
    assert check.ok and check.detail == f"{mode} mode", check


def test_userns_mode_probe_names_what_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from gigmcp.sandbox import holder

    # An unshare that cannot make the namespaces (what a container whose seccomp profile
    # refuses unshare(2) looks like from here).
    monkeypatch.setattr(holder, "UNSHARE", "/bin/false")
    check = doctor.check_network_namespaces("userns")
    assert not check.ok
    assert "userns mode: cannot create a user and network namespace" in (check.problem or "")
    assert "unprivileged user namespaces" in check.fix


def test_auto_picks_root_mode_with_sys_admin_and_userns_without() -> None:
    from gigmcp.sandbox import mode

    everything = (1 << 41) - 1
    assert mode.resolve("auto", everything) == "root"
    assert mode.resolve("auto", everything & ~(1 << 21)) == "userns"
    assert mode.resolve("root", 0) == "root", "an explicit mode is taken as it is"
    assert mode.missing("userns", everything & ~(1 << 21)) == []
    assert mode.missing("root", everything & ~(1 << 21)) == ["SYS_ADMIN"]
    with pytest.raises(ValueError, match="auto, root, userns"):
        mode.resolve("rootless")


def test_a_read_only_cgroup_hierarchy_is_named_before_any_launch() -> None:
    """What a container engine gives an unprivileged container: the doctor says so,
    instead of every launch failing on it later."""
    problem = cgroups.available()
    if problem is not None:
        pytest.skip(f"cgroups are not usable here: {problem}")
    chosen, _ = cgroups._plan()
    mount = chosen["memory"].mount
    probe = (
        "from gigmcp.sandbox import doctor; c = doctor.check_cgroups(); print(c.problem or 'NONE')"
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -o remount,bind,ro "{mount}" && exec "{sys.executable}" -c "{probe}"'],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert f"the cgroup hierarchy is mounted read-only at {mount}" in out
    assert "docs/containers.md" in out


def test_a_writable_folder_bound_over_a_read_only_hierarchy_is_what_counts() -> None:
    """The container recipe of docs/containers.md: a delegated folder bound over the
    engine's read-only hierarchy. The visible (last) mount is the one judged."""
    problem = cgroups.available()
    if problem is not None:
        pytest.skip(f"cgroups are not usable here: {problem}")
    chosen, _ = cgroups._plan()
    mounts = sorted({h.mount for h in chosen.values()})
    name = f"gigmcp-doctor-test-{os.getpid()}"
    folders = [os.path.join(m, name) for m in mounts]
    # A writable view of each hierarchy taken first (a bind keeps its source's flags),
    # as the host's own hierarchy is to the engine; then the engine's read-only mount,
    # then the delegated folder bound over it.
    steps = []
    for i, m in enumerate(mounts):
        rw = f"/tmp/{name}-{i}"
        steps += [
            f'mkdir -p "{rw}"',
            f'mount --bind "{m}" "{rw}"',
            f'mount -o remount,bind,ro "{m}"',
            f'mount --bind "{rw}/{name}" "{m}"',
        ]
    script = " && ".join(
        [*steps, f'exec "{sys.executable}" -c "from gigmcp.sandbox import doctor; '
                 "print(doctor.check_cgroups().problem or 'NONE')\""]
    )  # fmt: skip
    for f in folders:
        os.mkdir(f)
    try:
        out = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    finally:
        for i, f in enumerate(folders):
            os.rmdir(f)
            with contextlib.suppress(OSError):
                os.rmdir(f"/tmp/{name}-{i}")
    assert "read-only" not in out, out

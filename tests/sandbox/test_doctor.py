"""``gigmcp doctor`` probes for real, and says so when a probe cannot vouch for the host."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gigmcp.sandbox import doctor

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

"""Install a PyPI package pinned by exact versions and wheel hashes, and say how to run it.

Owns one install: a virtual environment of its own (``python -m venv --without-pip``,
made from a Python the jails can bind read-only), a requirements file written from the
spec and its lock (``name==version --hash=sha256:...`` per distribution, nothing else),
the wheels downloaded with no dependency resolution and their sha256 checked here
(constant time) before pip installs them with ``--require-hashes --no-deps
--only-binary=:all:`` into that environment (pip running from the gateway's own
environment, ``pip --python``), ``pip check`` proving the lock is the whole closure, the
console script found, and the folder renamed into ``<servers>/<name>/<version>``.

Source distributions are refused: building one runs its ``setup.py`` or build backend,
that is the package's code, at install time, outside any jail. It must never install a
file whose hash the spec does not name, never resolve a dependency the lock does not
list, never leave a partial install behind, and never hand pip the gateway's
environment (``child_env``: basics only). Blocking (it waits for pip): call it
from a thread.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gigmcp.packages.child_env import child_env
from gigmcp.packages.spec import (
    Installation,
    LaunchCommand,
    PackageInstallError,
    PackageSpec,
    SpecError,
    commit,
    existing,
    install_root,
    read_record,
    redact,
    same_hash,
    sha256_of,
    staging,
)

MAX_ERROR_LINES = 8


@dataclass(frozen=True, slots=True)
class PypiSource:
    """Where wheels come from and what builds the environment. pip runs ``--isolated``
    (no pip.conf, no PIP_* variables): only what is set here counts."""

    index_url: str | None = None  # None: PyPI
    find_links: tuple[str, ...] = ()
    no_index: bool = False  # only ``find_links`` (offline wheelhouses, tests)
    cache_dir: str | None = None  # None: no cache
    # The interpreter each server's environment is made from. It is bound read-only into
    # the jail, so it must be readable by the jails' uids: the system's Python, not one
    # under /root (pyenv) or in the gateway's own virtual environment.
    python: str = "/usr/bin/python3"
    pip: tuple[str, ...] = field(default=(sys.executable, "-m", "pip"))
    timeout: float = 600.0


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Typing_Extensions`` and ``typing-extensions`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(slots=True)
class _Pin:
    identifier: str
    version: str
    hashes: set[str]


def pins(spec: PackageSpec) -> dict[str, _Pin]:
    """The spec and its lock by canonical name. A name may appear more than once with
    the same version (one wheel per platform, each its own hash), never with two."""
    out: dict[str, _Pin] = {}
    for identifier, version, integrity in [
        (spec.identifier, spec.version, spec.integrity),
        *((e.identifier, e.version, e.integrity) for e in spec.lock),
    ]:
        key = canonical_name(identifier)
        pin = out.setdefault(key, _Pin(identifier, version, set()))
        if pin.version != version:
            raise SpecError(
                f"lock of {spec.ref} pins {identifier} twice: {pin.version} and {version}"
            )
        pin.hashes.add(integrity)
    return out


def requirements(spec: PackageSpec, with_hashes: bool = True) -> str:
    """The requirements file pip installs from: one exact pin per line, nothing else (the
    names and versions were validated, so no line can carry an option of its own)."""
    lines = []
    for pin in pins(spec).values():
        hashes = "".join(f" --hash={h}" for h in sorted(pin.hashes)) if with_hashes else ""
        lines.append(f"{pin.identifier}=={pin.version}{hashes}")
    return "\n".join(lines) + "\n"


def _env() -> dict[str, str]:
    # Built from nothing: the gateway's environment may hold secrets, and pip's own
    # variables (another index, extra find-links) or a Python path (other code loaded
    # into pip) must not steer an install.
    return child_env()


def _pip(source: PypiSource, python: Path, command: str, *args: str) -> list[str]:
    base = [*source.pip, "--python", str(python), command, "--isolated"]
    base += ["--disable-pip-version-check", "--no-input", "--no-color"]
    return [*base, *args]


def _sources(source: PypiSource) -> list[str]:
    args: list[str] = []
    if source.no_index:
        args.append("--no-index")
    elif source.index_url:
        args += ["--index-url", source.index_url]
    # pip runs in a work folder: relative paths must still mean the caller's.
    for link in source.find_links:
        args += ["--find-links", link if "://" in link else os.path.abspath(link)]
    if source.cache_dir:
        args += ["--cache-dir", os.path.abspath(source.cache_dir)]
    else:
        args.append("--no-cache-dir")
    return args


def _exec(args: list[str], source: PypiSource, doing: str, cwd: Path) -> tuple[int, str]:
    """Run a tool; (exit code, its stderr and stdout)."""
    try:
        done = subprocess.run(
            args,
            cwd=cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=source.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PackageInstallError(
            f"{doing}: it did not finish within {source.timeout:.0f} s"
        ) from exc
    except OSError as exc:
        raise PackageInstallError(f"{doing}: cannot run {args[0]}: {exc.strerror}") from exc
    return done.returncode, done.stderr + done.stdout


def _run(args: list[str], source: PypiSource, doing: str, cwd: Path) -> None:
    code, output = _exec(args, source, doing, cwd)
    if code == 0:
        return
    missing = re.search(r"No matching distribution found for (\S+)", output)
    if missing:
        raise PackageInstallError(
            f"{doing}: no wheel of {missing.group(1)} for this Python and platform "
            "(source distributions are refused: building one runs the package's code "
            "at install time)"
        )
    lines = [line.strip() for line in output.splitlines() if line.startswith("ERROR:")]
    detail = "; ".join(lines[:MAX_ERROR_LINES]) or output.strip()[-500:] or "no output"
    raise PackageInstallError(f"{doing}: {redact(detail)}")


def check_closure(spec: PackageSpec, python: Path, source: PypiSource, cwd: Path) -> None:
    """``pip check`` in the new environment: with ``--no-deps`` nothing fills a gap in
    the lock, so a missing or conflicting dependency is found here, not at first start."""
    code, output = _exec(_pip(source, python, "check"), source, f"cannot check {spec.ref}", cwd)
    if code != 0:
        found = [line.strip() for line in output.splitlines() if line.strip()]
        raise PackageInstallError(
            f"the lock of {spec.ref} is not its whole dependency closure: "
            + "; ".join(found[:MAX_ERROR_LINES])
        )


def _wheel_name(filename: str) -> tuple[str, str] | None:
    """(canonical name, version) of a wheel file, or None for anything else."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        return None
    return canonical_name(parts[0]), parts[1]


def verify_downloads(spec: PackageSpec, download: Path) -> None:
    """Every downloaded file is a wheel the spec pins, hash and all; every pin has one."""
    wanted = pins(spec)
    seen: set[str] = set()
    for path in sorted(download.iterdir()):
        parsed = _wheel_name(path.name)
        if parsed is None:
            raise PackageInstallError(
                f"{path.name} is not a wheel: source distributions are refused "
                "(building one runs the package's code at install time)"
            )
        name, version = parsed
        pin = wanted.get(name)
        if pin is None:
            raise PackageInstallError(
                f"pip fetched {path.name}, which the lock of {spec.ref} lacks"
            )
        if pin.version != version:
            # Exact text, not PEP 440 equality (where 1.0 == 1.0.0): the pin says the file.
            raise PackageInstallError(
                f"pip fetched {path.name} for {pin.identifier}=={pin.version}: "
                "pin the version exactly as the wheel names it"
            )
        actual = sha256_of(path)
        if not any(same_hash(h, actual) for h in pin.hashes):
            expected = " or ".join(sorted(pin.hashes))
            raise PackageInstallError(
                f"integrity mismatch for {pin.identifier}=={pin.version}: "
                f"expected {expected}, got {actual}"
            )
        seen.add(name)
    missing = sorted(set(wanted) - seen)
    if missing:
        raise PackageInstallError(f"pip fetched nothing for {', '.join(missing)}")


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if len(found) != 1:
        raise PackageInstallError(f"{venv}: cannot find its site-packages")
    return found[0]


def find_script(venv: Path, spec: PackageSpec, script: str | None = None) -> str:
    """The console script the package declares (read from its metadata, never by
    importing it), which pip must have written into the environment's bin."""
    dist = next(
        (
            d
            for d in importlib.metadata.distributions(path=[str(_site_packages(venv))])
            if canonical_name(d.metadata["Name"] or "") == canonical_name(spec.identifier)
        ),
        None,
    )
    if dist is None or dist.version != spec.version:
        raise PackageInstallError(f"{spec.ref} is not what pip installed")
    scripts = sorted(ep.name for ep in dist.entry_points.select(group="console_scripts"))
    if script is not None:
        if script not in scripts:
            raise PackageInstallError(
                f"{spec.ref} has no console script {script!r} (it has: {', '.join(scripts)})"
            )
        chosen = script
    elif len(scripts) == 1:
        chosen = scripts[0]
    elif canonical_name(spec.identifier) in scripts:
        chosen = canonical_name(spec.identifier)
    elif not scripts:
        raise PackageInstallError(f"{spec.ref} declares no console script: nothing to run")
    else:
        raise PackageInstallError(
            f"{spec.ref} declares several console scripts ({', '.join(scripts)}): "
            "name the one to run"
        )
    if not (venv / "bin" / chosen).is_file():
        raise PackageInstallError(f"{spec.ref}: pip wrote no bin/{chosen}")
    return chosen


def _repoint_scripts(venv: Path, final_venv: Path) -> None:
    """pip writes the staging path into each script's ``#!`` line; the folder is renamed
    afterwards, so name the final one (before the rename, which stays the commit)."""
    old, new = f"#!{venv}/bin/".encode(), f"#!{final_venv}/bin/".encode()
    for path in (venv / "bin").iterdir():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if data.startswith(old):
            path.write_bytes(new + data[len(old) :])


def launch_command(root: Path) -> LaunchCommand:
    """How to start the install at ``root``: its environment's Python (a link to the
    system Python, bound read-only in the jail) running the console script."""
    record = read_record(root)
    if record is None or record.get("spec", {}).get("registry_type") != "pypi":
        raise PackageInstallError(f"{root} is not a PyPI install made by gigmcp")
    venv = root / "venv"
    return LaunchCommand((str(venv / "bin" / "python"), str(root / record["entrypoint"])))


def install(
    spec: PackageSpec,
    servers_dir: Path,
    name: str,
    source: PypiSource | None = None,
    script: str | None = None,
) -> Installation:
    """Install ``spec`` as server ``name`` (idempotent: the same spec already installed
    is returned as it is). Raises :class:`PackageInstallError`, leaving nothing behind."""
    source = source or PypiSource()
    if spec.registry_type != "pypi":
        raise PackageInstallError(f"{spec.ref} is an npm package, not a PyPI one")
    final = install_root(servers_dir, name, spec.version)
    if existing(final, spec) is None:
        python = shutil.which(source.python)
        if python is None:
            raise PackageInstallError(f"no Python to build the environment from: {source.python}")
        with staging(servers_dir, name, spec.version) as work:
            download, root = work / "download", work / "root"
            download.mkdir()
            root.mkdir()
            venv = root / "venv"
            _run(
                [python, "-m", "venv", "--without-pip", str(venv)],
                source,
                f"cannot create the environment of {spec.ref}",
                work,
            )
            venv_python = venv / "bin" / "python"
            (work / "pins.txt").write_text(requirements(spec, with_hashes=False))
            (work / "requirements.txt").write_text(requirements(spec))
            common = ["--no-deps", "--only-binary=:all:"]
            # First fetch, unverified but inert (wheels are only unpacked later), and check
            # each file here, for an error that names the package and both hashes.
            _run(
                _pip(source, venv_python, "download", *common, *_sources(source),
                     "--dest", str(download), "--requirement", str(work / "pins.txt")),
                source,
                f"cannot fetch {spec.ref}",
                work,
            )  # fmt: skip
            verify_downloads(spec, download)
            # Then install from those files only, pip checking every hash once more.
            _run(
                _pip(source, venv_python, "install", *common, "--require-hashes",
                     "--no-index", "--find-links", str(download), "--no-cache-dir",
                     "--requirement", str(work / "requirements.txt")),
                source,
                f"cannot install {spec.ref}",
                work,
            )  # fmt: skip
            check_closure(spec, venv_python, source, work)
            chosen = find_script(venv, spec, script)
            _repoint_scripts(venv, final / "venv")
            commit(root, final, spec, f"venv/bin/{chosen}", {})
    record = read_record(final) or {}
    return Installation(spec, final, final / str(record.get("entrypoint")), launch_command(final))

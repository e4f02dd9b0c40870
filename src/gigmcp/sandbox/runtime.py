"""What a server's runtime needs to see: the read-only file list for its jail.

Owns turning a server's command into (argv, paths to bind read-only): the executable,
following a ``#!`` line to its interpreter; the shared libraries that interpreter and
every native module load (read from the ELF files with pyelftools, never by running
them); for Python the standard library and the virtual environment; for Node the
outermost ``node_modules`` the script lives in. It also owns saying, before anything
runs, why a command cannot run in the jail, in words an operator can act on: a missing
command or ELF interpreter, a file the jail's user may not read or execute, a folder on
the way it may not enter (checked component by component, as the kernel will). It must
never bind a directory it was not asked for or a library from outside the system library
directories, never execute anything it inspects, and never follow a package's own claims
(a DT_NEEDED with a path, a RUNPATH) out of the package or the system library directories.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from gigmcp.errors import LaunchError

# Where the dynamic loader looks on Debian (multiarch first). Only libraries found here
# are bound: a package cannot talk us into exposing anything else.
LIBRARY_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
)
# Top-level symlinks of a merged-/usr system, recreated inside so that paths baked into
# binaries (the ELF interpreter /lib64/ld-linux-x86-64.so.2) resolve.
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Native modules are found by walking the package; a huge tree must not stall a start.
MAX_NATIVE_SCAN = 20_000
TRAMPOLINE = "/bin/sh"


class RuntimeScanError(LaunchError):
    """The command cannot be jailed as given (not found, unreadable, unsupported).
    ``problem`` says what is wrong, ``fix`` what to do about it (may be empty); the
    message is both. Host paths appear in it: it is for the operator, never a client."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}; fix: {fix}" if fix else problem)
        self.problem = problem
        self.fix = fix


# The jail's user: uid 65534 inside, a host uid of its own outside (sandbox/jail.py,
# host_uid), which owns no host file and is in no host group. So the kernel checks the
# jail's access to host files (bubblewrap binding them, the server opening them) with
# their "other" permission bits, and so does this module.
JAIL_UID = 65534
_HOME_DIRS = ("/root", "/home")


@dataclass(frozen=True, slots=True)
class RuntimePlan:
    argv: tuple[str, ...]
    kind: str  # "python" | "node" | "binary" | "rootfs"
    ro_paths: tuple[str, ...]  # bound read-only at the same path inside
    symlinks: tuple[tuple[str, str], ...]  # (target, link) recreated inside
    workdir: str | None
    binds: tuple[tuple[str, str], ...] = ()  # (host path, path inside), read-only


# What the jail provides itself on top of an image's root: never taken from the image.
JAIL_OWNED = {"proc", "dev", "sys", "tmp", "home", "run"}
JAIL_ETC = {"passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "ssl"}
IMAGE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def plan_rootfs(rootfs: str, command: tuple[str, ...], cwd: str | None = None) -> RuntimePlan:
    """An extracted image as the jail's root: each top-level entry bound read-only at
    its place (links recreated as links), /etc entry by entry so that the jail's own
    passwd, hosts, resolver and CA bundle win, and the command resolved inside it."""
    root = os.path.realpath(rootfs)
    if root in SHARED_DIRS or rootfs in SHARED_DIRS:
        raise RuntimeScanError(f"image root {rootfs} is a host system folder, not an image")
    if not os.path.isdir(root):
        raise RuntimeScanError(f"image root {rootfs} is not a directory")
    problem = jail_access_problem(root)
    if problem is not None:
        raise RuntimeScanError(
            problem.text,
            "keep GIG_PACKAGES_DIR in a folder every user can enter (the default is "
            f"/var/lib/gigmcp/packages): {_WHY}",
        )
    if not command:
        raise RuntimeScanError("empty command")
    binds: list[tuple[str, str]] = []
    links: list[tuple[str, str]] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        inside = "/" + entry.name
        if entry.name in JAIL_OWNED:
            continue
        if entry.is_symlink():
            links.append((os.readlink(entry.path), inside))
        elif entry.name == "etc" and entry.is_dir():
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if sub.name in JAIL_ETC:
                    continue
                if sub.is_symlink():
                    links.append((os.readlink(sub.path), f"/etc/{sub.name}"))
                else:
                    binds.append((sub.path, f"/etc/{sub.name}"))
        else:
            binds.append((entry.path, inside))
    exe = command[0]
    if not exe.startswith("/"):
        found = next((f"{d}/{exe}" for d in IMAGE_PATH if _exists_in(root, f"{d}/{exe}")), None)
        if found is None:
            raise RuntimeScanError(f"command not found in the image: {exe}")
        exe = found
    elif not _exists_in(root, exe):
        raise RuntimeScanError(f"command not found in the image: {exe}")
    return RuntimePlan((exe, *command[1:]), "rootfs", (), tuple(links), cwd, tuple(binds))


def _exists_in(root: str, path: str) -> bool:
    """Whether ``path`` names a file inside the image, following the image's own links
    without ever leaving it (an absolute link is resolved against the image's root)."""
    current = path
    for _ in range(40):
        parts = [p for p in current.split("/") if p]
        resolved = ""
        for i, part in enumerate(parts):
            candidate = os.path.join(root, resolved.lstrip("/"), part)
            if os.path.islink(candidate):
                target = os.readlink(candidate)
                base = "/" if target.startswith("/") else (resolved or "/")
                rest = "/".join(parts[i + 1 :])
                current = os.path.normpath(os.path.join(base, target, rest))
                break
            resolved = f"{resolved}/{part}"
        else:
            return os.path.isfile(os.path.join(root, resolved.lstrip("/")))
    return False


_elf_cache: dict[tuple[str, int, int], tuple[tuple[str, ...], str | None]] = {}
_cache_lock = threading.Lock()


def _elf_needs(path: str) -> tuple[tuple[str, ...], str | None]:
    """DT_NEEDED names and PT_INTERP of one ELF file (cached by path, size, mtime)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        hit = _elf_cache.get(key)
    if hit is not None:
        return hit
    needed: list[str] = []
    interp: str | None = None
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            # Segments, not sections: the loader reads only these, and walking the
            # section table of a 100 MB binary (node) costs ten times as much.
            for seg in elf.iter_segments():
                if isinstance(seg, InterpSegment):
                    interp = seg.get_interp_name()
                elif isinstance(seg, DynamicSegment):
                    needed.extend(
                        str(t.needed)  # type: ignore[attr-defined]  # DT_NEEDED tags have it
                        for t in seg.iter_tags()
                        if t.entry.d_tag == "DT_NEEDED"
                    )
    except (ELFError, OSError, ValueError):
        pass  # not an ELF file we can read: nothing to add
    result = (tuple(needed), interp)
    with _cache_lock:
        _elf_cache[key] = result
    return result


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _loader_name(path: str) -> str:
    """The path the loader opens, with directory symlinks resolved (``/lib`` is a link
    to ``usr/lib`` inside too) but the file's own name kept: the loader asks for the
    soname (``libstdc++.so.6``), which on the host is a link to the versioned file."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def library_closure(elves: Iterable[str]) -> set[str]:
    """Every file the loader maps for these ELF files, under the names it asks for."""
    out: set[str] = set()
    todo = list(elves)
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        needed, interp = _elf_needs(path)
        if (
            interp
            and _under(os.path.realpath(interp), LIBRARY_DIRS)
            and os.path.isfile(os.path.realpath(interp))
        ):
            out.add(_loader_name(interp))
        for name in needed:
            if "/" in name or name in (".", "..") or not name:
                continue  # the package choosing what we expose, not a library name
            for d in LIBRARY_DIRS:
                candidate = os.path.join(d, name)
                if os.path.exists(candidate):
                    real = os.path.realpath(candidate)
                    # A regular file only: a name like ".." must never bind a directory.
                    if _under(real, LIBRARY_DIRS) and os.path.isfile(real):
                        out.add(_loader_name(candidate))
                        todo.append(real)
                    break
    return out


def _which(name: str, path_env: str | None) -> str:
    if "/" in name:
        resolved = os.path.abspath(name)
        if not os.path.isfile(resolved):
            raise RuntimeScanError(
                f"command not found: {name}",
                "check the server's command (gigmcp server list) and that it is installed there",
            )
        return resolved
    search = path_env or "/usr/local/bin:/usr/bin:/bin"
    found = shutil.which(name, path=search)
    if found is None:
        raise RuntimeScanError(
            f"command not found on PATH: {name}",
            f"give its full path (the jail's PATH is {search})",
        )
    return os.path.abspath(found)


def _shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as exc:
        raise RuntimeScanError(f"cannot read {path}: {exc.strerror}") from exc
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
    return line.split(None, 1) if line else None


@dataclass(frozen=True, slots=True)
class AccessProblem:
    text: str  # what is wrong, naming the path
    folder: str | None = None  # the folder on the way the jail's user cannot enter


def jail_access_problem(path: str, *, execute: bool = False) -> AccessProblem | None:
    """Why the jail's user could not use ``path``, or None: every folder on the way
    (as written and as resolved, since the kernel walks both) must let others enter
    (x); a folder itself must let them list it (r+x); a file must let them read it (r),
    or, when it is run, execute it (x). A path with a POSIX ACL is given the benefit of
    the doubt: its permission bits alone do not say."""
    absolute = os.path.abspath(path)
    folders: list[str] = []
    for candidate in (absolute, os.path.realpath(absolute)):
        parts = candidate.split("/")[1:-1]
        folders.extend("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))
    for folder in dict.fromkeys(folders):
        try:
            st = os.stat(folder)
        except OSError:
            continue  # a dangling part: "cannot be reached" is said for the path itself
        if not st.st_mode & stat.S_IXOTH and not _has_acl(folder):
            return AccessProblem(
                f"{path} is under {folder} ({_describe(st)}), which the jail's user "
                f"(uid {JAIL_UID}) cannot enter",
                folder,
            )
    try:
        st = os.stat(absolute)
    except OSError as exc:
        return AccessProblem(f"{path} cannot be reached: {exc.strerror}")
    if _has_acl(absolute):
        return None
    who = f"the jail's user (uid {JAIL_UID})"
    if stat.S_ISDIR(st.st_mode):
        if st.st_mode & (stat.S_IROTH | stat.S_IXOTH) != stat.S_IROTH | stat.S_IXOTH:
            return AccessProblem(f"{path} is a folder {who} cannot list ({_describe(st)})")
        return None
    if execute and not st.st_mode & stat.S_IXOTH:
        return AccessProblem(f"{path} is not executable by {who} ({_describe(st)})")
    if not execute and not st.st_mode & stat.S_IROTH:
        return AccessProblem(f"{path} is not readable by {who} ({_describe(st)})")
    return None


def _describe(st: os.stat_result) -> str:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"mode {stat.S_IMODE(st.st_mode):04o}, owner {owner}"


def _has_acl(path: str) -> bool:
    try:
        return "system.posix_acl_access" in os.listxattr(path)
    except OSError:
        return False


_WHY = "the jail runs servers as an unprivileged user"


def _access_fix(problem: AccessProblem, kind: str, runtime_file: bool) -> str:
    """What an operator can do: move out of a private folder first (opening a home
    folder to every user is rarely what anyone wants)."""
    folder = problem.folder
    if folder is None:
        if "not executable" in problem.text:
            return f"chmod o+rx on it: {_WHY}"
        return f"chmod o+r on it (o+rx on a folder): {_WHY}"
    if runtime_file and kind == "python":
        how = (
            "recreate the server's virtual environment from an interpreter every user can "
            f"read (e.g. /usr/bin/python3 -m venv DIR), or install that Python outside {folder}"
        )
    elif runtime_file:
        how = f"run the server with a {kind} every user can read, installed outside {folder}"
    else:
        how = f"install the server outside {folder} (e.g. under /opt or /srv)"
    private = any(folder == h or folder.startswith(h + "/") for h in _HOME_DIRS)
    if not private:
        how += f", or let others enter {folder} (chmod o+x {folder})"
    return f"{how}: {_WHY}"


def _check_elf_interpreter(executable: str) -> None:
    """The loader an ELF binary names must exist here, in a system library folder (the
    only ones the jail shows); otherwise the exec fails with a bare ENOENT inside."""
    if not _is_elf(executable):
        return
    _needed, loader = _elf_needs(executable)
    if loader is None:
        return  # statically linked
    if not os.path.isfile(loader):
        raise RuntimeScanError(
            f"{executable} needs the ELF interpreter {loader}, which this host does not have",
            "install a build of the server for this system (its libc and architecture)",
        )
    if not _under(os.path.realpath(loader), LIBRARY_DIRS):
        raise RuntimeScanError(
            f"{executable} needs the ELF interpreter {loader}, outside the system library "
            "folders the jail shows",
            "install a build of the server linked against the system's own libc",
        )
    for name in _needed:
        if "/" in name or not name:
            continue  # never looked up (see library_closure)
        if not any(os.path.exists(os.path.join(d, name)) for d in LIBRARY_DIRS):
            # Found, if at all, through the binary's own RUNPATH (a pyenv Python's
            # libpython in its prefix): the jail shows only the system's folders.
            raise RuntimeScanError(
                f"{executable} needs the shared library {name}, which is not in the system "
                "library folders (the only ones the jail shows)",
                "run the server with a runtime from the distribution's packages (e.g. "
                "/usr/bin/python3, /usr/bin/node) or a build linked only against system "
                "libraries",
            )


def _native_modules(root: str, suffixes: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    seen = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            seen += 1
            if name.endswith(suffixes):
                found.append(os.path.join(dirpath, name))
        if seen > MAX_NATIVE_SCAN:
            break
    return found


def _venv_of(executable: str) -> str | None:
    """The virtual environment an interpreter path belongs to (``<venv>/bin/python``)."""
    candidate = Path(executable).parent.parent
    return str(candidate) if (candidate / "pyvenv.cfg").is_file() else None


def _python_paths(interp_link: str) -> list[str]:
    real = os.path.realpath(interp_link)
    name = os.path.basename(real)  # python3.11
    version = name.removeprefix("python")
    if not version or not version[0].isdigit():
        raise RuntimeScanError(f"cannot tell the Python version of {real}")
    base_prefix = os.path.dirname(os.path.dirname(real))
    paths = [real]
    stdlib = os.path.join(base_prefix, "lib", f"python{version}")
    if not os.path.isdir(stdlib):
        raise RuntimeScanError(f"{real}: its standard library {stdlib} is missing")
    paths.append(stdlib)
    venv = _venv_of(interp_link)
    if venv:
        paths.append(venv)
    return paths


def _node_root(script: str) -> str:
    """Node resolves modules by walking up through ``node_modules`` folders: bind the
    outermost one the script lives in, or the script's own folder."""
    parts = Path(script).parts
    if "node_modules" in parts:
        first = parts.index("node_modules")
        return str(Path(*parts[: first + 1]))
    return str(Path(script).parent)


def plan(command: tuple[str, ...], cwd: str | None, path_env: str | None = None) -> RuntimePlan:
    if not command:
        raise RuntimeScanError("empty command")
    exe = _which(command[0], path_env)
    # Inside, the working directory is not the gateway's: a relative path that names a
    # file here must name the same file there.
    rest = [
        os.path.abspath(a) if not a.startswith("-") and os.path.isfile(a) else a
        for a in command[1:]
    ]
    command = (command[0], *rest)
    argv = [exe, *command[1:]]
    script: str | None = None
    interp = exe
    bang = _shebang(exe) if not _is_elf(exe) else None
    if bang is not None:
        script = exe
        prog, arg = bang[0], (bang[1] if len(bang) > 1 else None)
        if os.path.basename(prog) == "env" and arg:
            interp = _which(arg.split()[0], path_env)
            argv = [interp, exe, *command[1:]]
        else:
            interp = _which(prog, path_env)
            argv = [interp, *([arg] if arg else []), exe, *command[1:]]
    if not _is_elf(os.path.realpath(interp)):
        raise RuntimeScanError(f"{interp} is not a native executable (nested #! is not supported)")

    base = os.path.basename(os.path.realpath(interp))
    ro: set[str] = set()
    # Every jail starts its command through /bin/sh (see jail.TRAMPOLINE).
    elves = [os.path.realpath(interp), os.path.realpath(TRAMPOLINE)]
    workdir = cwd
    py_paths: list[str] = []
    entry = script  # the file the interpreter runs, when there is one: it must be readable
    if base.startswith("python"):
        kind = "python"
        py_paths = _python_paths(interp)
        ro.update(py_paths)
        if script is None:
            # `python -m pkg` or `python file.py`: the file's folder is the package.
            for arg in command[1:]:
                if not arg.startswith("-") and os.path.isfile(arg):
                    ro.add(_package_dir(os.path.dirname(os.path.abspath(arg))))
                    entry = os.path.abspath(arg)
                    break
        for p in py_paths[1:]:
            elves.extend(_native_modules(p, (".so",)))
    elif base.startswith("node"):
        kind = "node"
        ro.add(os.path.realpath(interp))
        target = script
        if target is None:
            target = next((a for a in command[1:] if not a.startswith("-")), None)
            if target is not None:
                target = os.path.abspath(target)
        if target is not None:
            entry = target if os.path.isfile(target) else None
            root = _package_dir(_node_root(target))
            ro.add(root)
            elves.extend(_native_modules(root, (".node",)))
    else:
        kind = "binary"
        ro.add(os.path.realpath(interp))
    if script is not None:
        ro.add(script)
    if cwd:
        ro.add(_package_dir(os.path.abspath(cwd)))
    ro.update(library_closure(elves))
    # The names the executables are called by must exist inside too, and every link on
    # the way (a venv's bin/python -> python3 -> /usr/bin/python3 -> python3.11).
    for name in (exe, interp, TRAMPOLINE):
        ro.update(_symlink_chain(name))
    for p in list(ro):
        if not os.path.exists(p):
            raise RuntimeScanError(f"{p} does not exist")
    _check_elf_interpreter(os.path.realpath(interp))
    # The interpreter first, by its real name: that is the file an operator installed.
    real_interp = os.path.realpath(interp)
    runnable = {real_interp, os.path.realpath(TRAMPOLINE)}
    # The interpreter and its standard library: the fix for those is another runtime.
    runtime_files = {real_interp, *py_paths[:2]}
    order = [real_interp, exe, *([entry] if entry else []), *sorted(ro)]
    for p in dict.fromkeys(order):
        problem = jail_access_problem(p, execute=os.path.realpath(p) in runnable)
        if problem is not None:
            raise RuntimeScanError(problem.text, _access_fix(problem, kind, p in runtime_files))
    symlinks = tuple((os.readlink(link), link) for link in MERGED_USR_LINKS if os.path.islink(link))
    return RuntimePlan(tuple(argv), kind, _outermost(ro), symlinks, workdir)


# Folders that are never a package of their own: binding one would show the jail a
# slice of the host (a script dropped in /tmp must not expose all of /tmp).
SHARED_DIRS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/media", "/mnt",
     "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/usr", "/usr/bin",
     "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/local/lib", "/var", "/var/lib"}
    | {"/tmp", "/var/tmp"}  # noqa: S108 - refused, never used
)  # fmt: skip


def _package_dir(path: str) -> str:
    real = os.path.realpath(path)
    if real in SHARED_DIRS or path in SHARED_DIRS:
        raise RuntimeScanError(
            f"{path} is a shared system folder, not a package: install the server in a "
            "folder of its own (the jail shows that folder, read-only)"
        )
    return path


def _symlink_chain(path: str) -> list[str]:
    """The path, then each path its symlinks lead through, ending at the real file."""
    chain = [path]
    current = path
    for _ in range(40):  # the kernel's own limit on link hops
        if not os.path.islink(current):
            break
        target = os.path.join(os.path.dirname(current), os.readlink(current))
        # A link's directory may itself be a link (/lib -> usr/lib): name the file as it
        # is found inside, where only the top-level links are recreated.
        current = os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))
        chain.append(current)
    return chain


def _outermost(paths: set[str]) -> tuple[str, ...]:
    """Drop paths inside another bound directory: binding onto a path inside a read-only
    bind would need a mount point there, and the directory already shows it."""
    kept: list[str] = []
    # Named through real directories (/bin/cat is /usr/bin/cat): the top-level links are
    # recreated inside, and a bind through one of them would need its target first.
    for p in sorted({_loader_name(q) for q in paths}):
        if not any(p.startswith(k.rstrip("/") + "/") for k in kept if os.path.isdir(k)):
            kept.append(p)
    return tuple(kept)

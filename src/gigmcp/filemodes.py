"""File modes of what the gateway keeps on disk, and the process umask.

Owns the rule for the data directory, the database files and key or secret files, the
one-line refusals that go with it, and the umask the gateway runs under (077: nothing it
creates is readable by another user unless it says so explicitly, as the package folders
the jails read do). The rule, and why:

* Another user's directory or file is refused: its owner controls what is in it (a
  master key or a database of their own), and we must not chmod what is not ours.
* A directory or database file that group or others can *write* is refused: they may
  already have planted or swapped something, and repairing the mode would not undo it.
  Check it, then fix the mode by hand.
* One that group or others can only *read* (0755, 0644: the umask of the day) is ours,
  nothing in it can have been changed by anyone else: it is repaired (chmod 0700/0600)
  with a loud log line, since what it held may have been read.
* A key or secret file group or others can read or write is refused with ``chmod 600``
  in the message, never repaired: a key that was readable may have leaked, and an
  operator has to decide whether to rotate it.

It imports nothing of the project (every layer may use it). It must never read a file's
contents, never add a permission to anything but a folder made for the jails, and never
change the mode of something another user owns.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from gigmcp.errors import ConfigurationError

log = logging.getLogger("gigmcp.filemodes")

UMASK = 0o077
PUBLIC_DIR = 0o755  # folders the jails' uids read (packages); writable by the owner only
# SQLite's companions of a database file: all hold the database's contents.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


class ModeError(ConfigurationError):
    """A path's owner or mode is unsafe and cannot be repaired safely; one line."""


def set_umask() -> None:
    """The gateway's umask, set first thing at start-up (``serve`` and every command)."""
    os.umask(UMASK)


def _ours(st: os.stat_result, path: Path, what: str) -> None:
    if st.st_uid != os.geteuid():
        raise ModeError(
            f"{what}: {path} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}): "
            "refusing it (its owner controls what is in it); chown it or choose another path"
        )


def _repair(path: Path, st: os.stat_result, allowed: int, what: str, kind: str) -> None:
    """Remove group/other bits beyond ``allowed``: refused when one is a write bit."""
    mode = stat.S_IMODE(st.st_mode)
    extra = mode & 0o077 & ~allowed
    if not extra:
        return
    if extra & 0o022:
        raise ModeError(
            f"{what}: {path} is writable by group or others (mode {mode:04o}): refusing it "
            f"(someone else may have changed what it holds); check it, then chmod {kind} {path}"
        )
    os.chmod(path, mode & ~extra)
    log.warning(
        "gigmcp: %s: %s was mode %04o, readable by other users; changed to %04o "
        "(what it held may have been read)",
        what,
        path,
        mode,
        mode & ~extra,
    )


def private_dir(path: Path, what: str, mode: int = 0o700) -> None:
    """Create ``path`` with ``mode``, or check and repair an existing one (module rule).

    ``mode`` is 0700, or 0711 for a data directory that holds the packages folder (the
    jails' uids must traverse it to reach their packages; they still cannot list it)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        st = os.stat(path)
    except OSError as exc:
        raise ModeError(f"{what}: cannot create {path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ModeError(f"{what}: {path} is not a directory")
    _ours(st, path, what)
    _repair(path, st, mode & 0o077, what, f"{mode:o}")


def private_file(path: Path, what: str) -> None:
    """An existing file the gateway alone reads and writes (a database file): ours, and
    0600 after this (repaired when group/others could only read it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ModeError(f"{what}: cannot stat {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModeError(f"{what}: {path} is not a regular file")
    _ours(st, path, what)
    _repair(path, st, 0, what, "600")


def create_private_file(path: Path, what: str) -> None:
    """``path`` exists as a 0600 file of ours (created empty if missing, whatever the
    umask), or :class:`ModeError`."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        private_file(path, what)
        return
    except OSError as exc:
        raise ModeError(f"{what}: cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # exactly, not what the umask left
    finally:
        os.close(fd)


def sqlite_database(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; None for another database or ``:memory:``."""
    if not url.startswith("sqlite:"):
        return None
    path = url.split("///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("sqlite:"):
        return None
    return Path(path)


def sqlite_files(database: Path, what: str, create: bool = True) -> None:
    """The database and its -wal, -shm and -journal files: ours and 0600 (the database
    created empty and 0600 when missing and ``create``). SQLite gives the companions it
    creates the database file's own mode, so a 0600 database keeps them 0600 whatever
    the umask."""
    if create:
        create_private_file(database, what)
    else:
        private_file(database, what)
    for suffix in SQLITE_SUFFIXES[1:]:
        private_file(database.with_name(database.name + suffix), what)


def check_secret_file(fd: int, path: str, what: str) -> None:
    """A key or secret file, checked on the open descriptor (no race with a swap):
    refused when group or others can read or write it."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o066:
        raise ModeError(
            f"{what}: {path} is readable or writable by group or others (mode {mode:04o}); "
            f"refusing it: chmod 600 {path}"
        )


def public_dirs(path: Path) -> None:
    """``path`` and every missing folder above it, created 0755 whatever the umask: the
    package folders the jails' uids must traverse. Existing folders are left as they are."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PUBLIC_DIR)
        except FileExistsError:
            continue  # made by a concurrent install: its maker sets its mode
        os.chmod(folder, PUBLIC_DIR)  # read-only to all but the owner, on purpose

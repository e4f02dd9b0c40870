"""A reproducer of CPython gh-106905, run as ``python -m tests.support.ast_fault [--guard]``.

Owns the two ways the test process met ``SystemError: AST constructor recursion depth
mismatch`` (see tests/support/astguard.py), made to happen on purpose in a fresh interpreter, and
prints how often each failed as one JSON line: ``nested`` (a finalizer run by the GC in
the middle of ``ast.parse`` raises, and the unraisable hook formats its traceback, as
pytest's does: a second parse inside the first) and ``threaded`` (two threads parsing
while finalizers hand the GIL back and forth). With ``--guard`` it first installs
tests/support/astguard.py's workaround. It must never be imported by the suite's own process: it
changes the GC thresholds and the unraisable hook of the interpreter it runs in.
"""

from __future__ import annotations

import argparse
import ast
import gc
import json
import sys
import threading
import traceback
from typing import Any

# Enough nodes that the GC runs while the tree becomes Python objects.
SOURCE = "\n".join(
    f"def f{i}(a, b):\n    return [x * {i} for x in range(a) if x % b] + [{{'k': (a, b)}}]"
    for i in range(200)
)


def _format_unraisable(unraisable: Any) -> None:
    # What pytest's unraisableexception plugin does with an "Exception ignored in".
    "".join(
        traceback.format_exception(
            unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback
        )
    )


class _RaisingFinalizer:
    """Garbage in a cycle (only the GC frees it) whose finalizer raises."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        table: dict[str, dict[str, int]] = {}
        table["missing"]["key"]  # a subscript: the formatted traceback gets ~~^^ anchors


class _HandOff:
    """Garbage in a cycle whose finalizer, the first time it runs, lets the other thread
    parse and waits for it to finish: the GIL hand-off a busy process makes by chance."""

    def __init__(self, inside: threading.Event, done: threading.Event) -> None:
        self.me = self
        self.inside, self.done = inside, done

    def __del__(self) -> None:
        if not self.inside.is_set():
            self.inside.set()
            self.done.wait(10)


def nested(rounds: int = 20) -> int:
    sys.unraisablehook = _format_unraisable
    faults = 0
    for _ in range(rounds):
        for _ in range(20):
            _RaisingFinalizer()
        try:
            ast.parse(SOURCE)
        except SystemError:
            faults += 1
    return faults


def threaded(rounds: int = 20) -> int:
    faults = 0

    def other(inside: threading.Event, done: threading.Event) -> None:
        nonlocal faults
        try:
            if inside.wait(10):
                ast.parse(SOURCE)
        except SystemError:
            faults += 1
        finally:
            done.set()

    for _ in range(rounds):
        inside, done = threading.Event(), threading.Event()
        thread = threading.Thread(target=other, args=(inside, done))
        thread.start()
        _HandOff(inside, done)
        try:
            ast.parse(SOURCE)
        except SystemError:
            faults += 1
        gc.collect()  # the hand-off happens here if it did not happen inside the parse
        thread.join()
    return faults


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--guard", action="store_true", help="install tests/support/astguard.py first"
    )
    args = parser.parse_args()
    if args.guard:
        from tests.support.astguard import install

        install()
    gc.set_threshold(50, 5, 5)  # collect often, so finalizers run mid-parse
    out = {
        "python": sys.version.split()[0],
        "nested": nested(),
        "threaded": threaded(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""A pytest plugin that keeps the test process clear of CPython's AST-constructor fault.

Owns one workaround, and only while pytest runs: on interpreters with CPython issue
gh-106905 (3.11.0-3.11.7 and 3.12.0-3.12.1; fixed by python/cpython#113476 in 3.11.8 and
#113472 in 3.12.2), ``ast.parse`` keeps the recursion depth of the tree it is turning into
Python objects in per-interpreter state. If Python code runs in the middle of that
conversion (the cyclic GC calling a ``__del__``/weakref callback, which can also hand the
GIL to another thread), any other ``ast.parse`` in between, in this thread or another,
overwrites the count and the outer call fails with ``SystemError: AST constructor
recursion depth mismatch``. Debian 12's ``/usr/bin/python3`` (3.11.2) has it, so does this
machine's pyenv 3.11.7, and no Debian or PyPI package offers a fixed 3.11.

In this test process ``ast.parse`` runs at unpredictable moments: pytest's assertion
rewriter (for test modules and for every module of a plugin's distribution, imported
lazily mid-test), pytest's failure reports, and 3.11's ``traceback`` (the ``~~^^``
anchors), which pytest's unraisable-exception and thread-exception hooks call from inside
the GC and from other threads. That is how ``./scripts/test`` died with an INTERNALERROR
(pytest-dev/pytest#11724 is the same report). So, on those interpreters only, every
``ast.parse`` here runs alone: under one lock (no other thread's parse in between) with
the cyclic GC paused (no Python code, hence no nested parse and no GIL hand-off, in the
middle of the conversion). tests/test_astguard.py shows the fault without this and none
with it.

It must never change what ``ast.parse`` returns or raises, never touch the gateway
processes the tests start (they are separate interpreters), and never stay installed
after pytest unconfigures.
"""

from __future__ import annotations

import ast
import gc
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the reproducer (tests/support/ast_fault.py) runs it where pytest is not
    import pytest

_original_parse: Callable[..., Any] = ast.parse
# Reentrant: a parse that triggers another in the same thread (a warning filter that
# formats a traceback, say) must not deadlock.
_alone = threading.RLock()


def has_the_fault(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> bool:
    """True for the CPython releases that have gh-106905 (the AST recursion counter)."""
    return (3, 11, 0) <= version < (3, 11, 8) or (3, 12, 0) <= version < (3, 12, 2)


def parse_alone(*args: Any, **kwargs: Any) -> Any:
    """``ast.parse``, with no other parse and no Python code able to run inside it."""
    with _alone:
        paused = gc.isenabled()
        gc.disable()
        try:
            return _original_parse(*args, **kwargs)
        finally:
            if paused:
                gc.enable()


def install() -> bool:
    """Put ``parse_alone`` in place where the interpreter needs it; True if it did."""
    if not has_the_fault() or ast.parse is parse_alone:
        return False
    ast.parse = parse_alone
    return True


def uninstall() -> None:
    if ast.parse is parse_alone:
        ast.parse = _original_parse


def pytest_configure(config: pytest.Config) -> None:
    install()


def pytest_unconfigure(config: pytest.Config) -> None:
    uninstall()

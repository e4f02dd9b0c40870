"""The suite's workaround for CPython gh-106905 (tests/support/astguard.py) does its job: the
reproducer (tests/support/ast_fault.py), run in a fresh interpreter, makes ``ast.parse`` fail on
every round without the workaround, and on none with it; and this very process runs with
it wherever the interpreter needs it."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from tests.support.astguard import has_the_fault, parse_alone
from tests.support.gateway import ROOT

needs_the_faulty_interpreter = pytest.mark.skipif(
    not has_the_fault(), reason=f"Python {sys.version.split()[0]} has the fix for gh-106905"
)


def reproduce(*args: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.ast_fault", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    counts: dict[str, int] = json.loads(done.stdout)
    return counts


@needs_the_faulty_interpreter
def test_without_the_guard_nested_and_threaded_parses_fail() -> None:
    # If this starts failing, the interpreter was fixed: drop tests/support/astguard.py.
    counts = reproduce()
    assert counts["nested"] > 0, counts
    assert counts["threaded"] > 0, counts


def test_with_the_guard_no_parse_fails() -> None:
    counts = reproduce("--guard")
    assert (counts["nested"], counts["threaded"]) == (0, 0), counts


def test_this_process_parses_alone_where_the_interpreter_needs_it() -> None:
    assert (ast.parse is parse_alone) == has_the_fault()
    assert ast.dump(ast.parse("x + 1")) == ast.dump(
        compile("x + 1", "<s>", "exec", ast.PyCF_ONLY_AST)
    )
    with pytest.raises(SyntaxError):
        ast.parse("x +")


@pytest.mark.parametrize(
    ("version", "faulty"),
    [
        ((3, 11, 2), True),  # Debian 12's /usr/bin/python3
        ((3, 11, 7), True),  # pyenv's on the machine the suite first failed on
        ((3, 11, 8), False),  # python/cpython#113476
        ((3, 12, 1), True),
        ((3, 12, 2), False),  # python/cpython#113472
        ((3, 13, 0), False),
        ((3, 10, 13), False),  # the reproducer finds no fault there
    ],
)
def test_which_interpreters_have_the_fault(version: tuple[int, int, int], faulty: bool) -> None:
    assert has_the_fault(version) is faulty

"""The ``gigmcp`` command: administer the local store and run the gateway.

Owns assembling the command from its groups (each module registers its commands on the
shared app of ``cli/app.py`` when imported; the order of imports is the order of
``--help``) and the process's first step. User errors are one line on stderr and a
non-zero exit, never a traceback. It must never hold a command itself.
"""

from __future__ import annotations

import sys

import typer

from gigmcp import filemodes
from gigmcp.cli.app import app, exit_code
from gigmcp.cli.serve import serve
from gigmcp.errors import GigError

# Imported for the commands they register, in the order --help lists them.
# isort: off
from gigmcp.cli import doctor  # noqa: F401
from gigmcp.cli import profile  # noqa: F401
from gigmcp.cli import server  # noqa: F401
from gigmcp.cli import install  # noqa: F401
from gigmcp.cli import pins  # noqa: F401
from gigmcp.cli import token  # noqa: F401
from gigmcp.cli import tool  # noqa: F401
from gigmcp.cli import credential  # noqa: F401
from gigmcp.cli import vault  # noqa: F401
from gigmcp.cli import registry  # noqa: F401
from gigmcp.cli import login  # noqa: F401
from gigmcp.cli import audit  # noqa: F401
from gigmcp.cli import backup  # noqa: F401
# isort: on

app.command("serve")(serve)


def main() -> None:
    # First thing, before any file is made: nothing the gateway writes is readable by
    # another user unless it says so (the package folders the jails read do).
    filemodes.set_umask()
    try:
        app()
    except GigError as err:
        # The CLI's one shape for every error of the gateway: one line on stderr and an
        # exit code, never a traceback. Messages are written for the operator and never
        # carry a secret (errors.py).
        typer.echo(f"gigmcp: {err}", err=True)
        sys.exit(exit_code(err))

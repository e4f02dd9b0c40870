"""Start the engine, whether run as a module or as a folder.

``python3 -m gigmcp.toolspec_engine INPUT.json`` works where ``gigmcp`` is importable.
In the jail only this folder is bound, under any name, and the interpreter runs with
``-I -S`` (no environment variables, no site-packages): ``python3 -I -S <folder>
INPUT.json``. Python then runs this file with the folder itself first on ``sys.path``;
the folder is taken off again (so that none of its module names can stand in for a
standard module) and loaded as a package of its own, ``_gigmcp_toolspec_engine``, whose
modules import each other relatively. This file owns that choice only; it must never
import anything but the standard library before the package is loaded.
"""

from __future__ import annotations

import sys


def _main() -> int:
    if __package__:
        from .cli import main

        return main(sys.argv[1:])
    import importlib
    import importlib.util
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    name = "_gigmcp_toolspec_engine"
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    if spec is None or spec.loader is None:
        sys.stderr.write(f"cannot load the toolspec engine from {here}\n")
        return 2
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    cli = importlib.import_module(f"{name}.cli")
    code: int = cli.main(sys.argv[1:])
    return code


if __name__ == "__main__":
    sys.exit(_main())

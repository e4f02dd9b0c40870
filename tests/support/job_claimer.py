"""One replica's claim on a background job (store/jobs.py), in a process of its own:

    python -m tests.support.job_claimer URL NAME START EVERY LEASE [--die]

waits until the wall-clock time START (so that every process claims at the same moment),
claims job NAME (due every EVERY seconds, leased for LEASE), and prints ``won`` or
``lost``. A winner finishes its run; with ``--die`` it exits at once instead, without
finishing or freeing the lease, as a replica killed mid-run would."""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta

from gigmcp.store import jobs
from gigmcp.store.db import make_engine


def main(argv: list[str]) -> int:
    url, name, start, every, lease = argv[:5]
    engine = make_engine(url)
    holder = jobs.new_holder()
    time.sleep(max(0.0, float(start) - time.time()))
    held = jobs.claim(
        engine, name, holder, timedelta(seconds=float(every)), timedelta(seconds=float(lease))
    )
    print("won" if held else "lost", flush=True)
    if held is not None:
        if "--die" in argv:
            os._exit(0)  # no finish, no clean-up: the lease must lapse on its own
        jobs.finish(engine, held)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Benchmark of Gig'MCP against the direct stdio call, the SDK's own HTTP transport and peers.

Run it with ``scripts/bench`` (installs the pinned peers first) or
``.venv/bin/python -m bench --help``. Results go to ``bench/results/<timestamp>.json``.
"""

"""Credentials: where the values of a server's declared variables come from.

Issue 4 fills this with the vault and per-instance placeholders; the gateway core only
defines the seam the launch path calls.
"""

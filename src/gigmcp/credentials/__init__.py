"""Credentials: where the values of a server's declared variables come from.

provider.py is the seam the launch path calls; vault_provider.py fills it from the vault
with per-instance placeholders for sealed credentials, which the egress proxy swaps back
for the real values on the way out.
"""

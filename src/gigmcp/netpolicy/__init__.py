"""Network policy shared by everything that reaches out: host canonicalisation, the SSRF
tables of addresses never to reach, vetted DNS resolution, the gateway host's own
addresses, and the egress allowlist with its ports.

Owns deciding whether a host, port or address may be reached. It must never import the
egress proxy or the installers that use it, and never opens a connection of its own
other than DNS lookups and reading the host's interface addresses.
"""

"""MCP servers the benchmark drives: small, fast, deterministic; the hop is what is measured."""

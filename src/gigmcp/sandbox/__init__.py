"""The jail: everything that isolates one untrusted MCP server process."""

"""The gateway as an OAuth client of a vendor's authorization server (connected accounts)."""

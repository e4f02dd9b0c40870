"""The egress proxy: the sandboxes' only way out."""

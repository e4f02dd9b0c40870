"""One module per group of routes; each only translates between HTTP and ``control/``."""

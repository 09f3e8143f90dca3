"""router: a YAML policy compiled into a resilient completion function."""

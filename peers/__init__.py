"""The process: a peer's life cycle, its configuration, the ``medswarm`` command line."""

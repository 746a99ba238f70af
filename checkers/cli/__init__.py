"""The ``llmstab`` command line: one module per subcommand, dispatched by :mod:`.main`."""

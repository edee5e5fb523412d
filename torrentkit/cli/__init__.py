"""The ``torrentkit`` command: one module per subcommand, wired up in :mod:`.main`."""

"""Subcommands of the `robustfair` command, one module each (see robustfair.cli)."""

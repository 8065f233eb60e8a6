"""Subcommands of the `vgs` command, one module each (registered in vgs.cli.COMMANDS)."""

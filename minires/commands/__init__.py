"""One module per ``minires`` subcommand (see `minires.cli`)."""

"""One module per group of `decoder-nas` commands; each registers its subcommands with the CLI."""

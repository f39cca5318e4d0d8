"""Multi-objective studies over the decoder design space, and the `decoder-nas` command line."""

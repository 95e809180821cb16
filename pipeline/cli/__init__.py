"""The `pipeline` command line: one module per command group; parse, call, print, nothing more."""

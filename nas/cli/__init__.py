"""The `nas` command line: one thin module per verb."""

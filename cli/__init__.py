"""The `nmt` command line: thin Typer adapters over the `nmt` library."""

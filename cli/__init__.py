"""nmt.cli: the `nmt` command. One thin Typer adapter per command (options -> config -> library call ->
report), registered in main.py; this folder installs as `nmt.cli`, so that nothing named `cli` lands in
site-packages.

May import anything in nmt; nothing in nmt imports it. Each command imports the library inside its function,
so that `nmt --help` does not load torch.
"""

"""`python -m kelp` is the same as the `kelp` command."""

from kelp.cli import app

app(prog_name="kelp")

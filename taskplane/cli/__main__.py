"""``python -m taskplane.cli``: the console script without the installed entry point."""

from taskplane.cli import main

main()

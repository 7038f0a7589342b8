"""``python -m controller``: the same as the ``relctl`` console script."""

from controller.cli import main

main()

"""``python -m streamdet`` runs the command-line interface."""

from .cli import main

main()

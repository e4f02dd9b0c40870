"""``python -m gigmcp`` runs the command-line tool."""

from gigmcp.cli.main import main

main()

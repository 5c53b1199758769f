"""`python -m strangler` is the `strangler` command."""

from strangler.cli.main import main

main()

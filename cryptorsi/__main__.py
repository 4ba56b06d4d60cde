"""``python -m cryptorsi`` is the ``cryptorsi`` command."""

from cryptorsi.cli import console_main

console_main()

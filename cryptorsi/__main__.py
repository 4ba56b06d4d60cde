"""``python -m cryptorsi`` is the ``cryptorsi`` command."""

import sys

from cryptorsi.cli import main

sys.exit(main())

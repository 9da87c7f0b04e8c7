"""``python -m parsec.cli``: the ``parsec`` command."""

import sys

from parsec.cli import main

sys.exit(main())

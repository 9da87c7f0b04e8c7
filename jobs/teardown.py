"""Ray job entrypoint: stop a fleet gracefully (every server marks itself offline).

``ray job submit -- python jobs/teardown.py --fleet optprov``
"""

import sys

from parsec.cli.fleet import teardown_main

if __name__ == "__main__":
    sys.exit(teardown_main())

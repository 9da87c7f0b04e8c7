"""Ray job entrypoint: ``ray job submit -- python jobs/scheduler.py --fleets default --rounds 10``."""

import sys

from parsec.scheduler.job import main

if __name__ == "__main__":
    sys.exit(main())

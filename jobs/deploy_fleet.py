"""Ray job entrypoint: place a fleet of parsec servers by region (idempotent).

``ray job submit -- python jobs/deploy_fleet.py --fleet optprov --regions eu-central-1,us-west-1 --servers-per-region 1``
"""

import sys

from parsec.cli.fleet import deploy_main

if __name__ == "__main__":
    sys.exit(deploy_main())

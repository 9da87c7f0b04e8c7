"""Ray operations: joining or starting a cluster (``connect``), placing testbed shards and
server actors (``deploy``), fleets declared by region and converged on (``fleet``), and
what a fleet looks like from the database (``fleet_status``)."""

"""Network models the testbed, ``parsec.net`` and the simulator share: WAN latency by
region (``latency``), peers leaving and coming back (``churn``) and stale routing-table
entries (``stale``). Pure: no sockets, no clocks of their own — each user feeds them."""

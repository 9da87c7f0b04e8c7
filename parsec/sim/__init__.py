"""Internet-scale simulation of the public DHT, driving the very engine real servers run.

``parsec.sim`` runs ``parsec.kad``'s machines (``Lookup``, the provide operations, the
crawler) and the fleets' policy (``parsec.kad.fleets``) over a virtual clock instead of
libp2p streams: a population of 25,000+ peers with a fill-model routing table each
(``population``), the region latency matrix with per-peer jitter, unreachable ids, dial
timeouts and backoff (``network``), churn (``churn``), measured servers that join the
honest way (``node``), the real scheduler's round logic (``rounds``) and the real runs'
records and Parquet writer (``run``; the command ``parsec simulate`` is ``parsec.cli.simulate``).
"""

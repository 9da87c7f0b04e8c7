"""Analysis of the measurements: loading (Parquet or PostgreSQL), statistics, plots, the
notebook runner behind ``parsec report`` and the table that ends a demo or a simulation
(``summary``). The notebooks in ``notebooks/`` only call into these modules, so what they
compute is tested like the rest of parsec."""

"""Analysis of the measurements: loading (Parquet or PostgreSQL), statistics, plots, and
the notebook runner behind ``parsec report``. The notebooks in ``notebooks/`` only call
into these modules, so what they compute is tested like the rest of parsec."""

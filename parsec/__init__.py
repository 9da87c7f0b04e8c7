"""parsec: DHT lookup performance measurement, distributed with Ray."""

__version__ = "0.1.0"

"""Tests of the parsec server's HTTP layer, CIDs and metrics (package: unique module names)."""

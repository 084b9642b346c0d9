"""Benchmarks (figures, not timed tests): `python -m benchmarks.run`."""

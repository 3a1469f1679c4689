"""Benchmarks run by hand (``python -m audioclf.benchmarks.<name>``), not by the test suite."""

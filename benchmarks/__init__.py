"""Benchmarks that need more than one process or file: ``python -m benchmarks.<name>``."""

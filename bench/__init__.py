"""Benchmarks that run outside the test suite, on PostgreSQL: `make bench`."""

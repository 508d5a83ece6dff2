"""Benchmarks: the servers `make bench` measures the service against, and how it measures them."""

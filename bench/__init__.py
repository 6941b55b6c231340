"""Benchmarks that measure Joule against the simulator; run them with python -m."""

"""Benchmarks (`make bench`). Results and the commands go to docs/benchmarks.md."""

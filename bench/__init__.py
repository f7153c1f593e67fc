"""Hearth's benchmarks. `make bench` (``python -m bench``) runs them; see docs/benchmarks.md."""

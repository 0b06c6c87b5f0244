"""Benchmarks of the grader (not part of `make test`): see benchmarks/README.md."""

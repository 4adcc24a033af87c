"""Benchmarks (run from the repository root: ``python -m bench.bench_processors``)."""

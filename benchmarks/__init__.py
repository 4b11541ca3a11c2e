"""fairshelf's performance harness: ``python -m benchmarks.run`` (see benchmarks/README.md)."""

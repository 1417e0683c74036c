"""The repository beside the library: declared dependencies, benchmarks/ and its GPU check script."""

"""Benchmarks and the data they (and the tests) read: runtime vs peers, the service end to end,
accuracy against sentence-transformers, Q8_0 recipes. Each writes its section of BENCHMARKS.md."""

"""Benchmark suite of llmtap: upstream stand-in, load generator and driver."""

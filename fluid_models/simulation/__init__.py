"""Batch-level simulation of one engine: arrivals, the compiled simulator, replay of batch sequences."""

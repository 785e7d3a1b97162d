"""Tokenization, the queue, batching and scheduling; knows nothing of HTTP."""

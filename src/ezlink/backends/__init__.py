"""Runtimes that turn batches of token ids into vectors; nothing here knows HTTP."""

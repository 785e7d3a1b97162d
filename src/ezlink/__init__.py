"""ezlink: an OpenAI-compatible AI API gateway, embeddings first."""

__version__ = "0.1.0"

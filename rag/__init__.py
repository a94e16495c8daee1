"""Sovereign RAG: document question answering that runs entirely on the organisation's own hardware."""

__version__ = "0.1.0"

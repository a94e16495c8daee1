"""The HTTP service (`rag serve`): a FastAPI app over one `Pipeline`; see app.py and docs/api.md."""

from .app import create_app, create_app_from_environment

__all__ = ["create_app", "create_app_from_environment"]

"""The labeling server: FastAPI app factory, routes, templates and static files."""

from labelwise.server.app import ServerConfig, create_app

__all__ = ["ServerConfig", "create_app"]

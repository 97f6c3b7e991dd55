"""Configuration of the index service."""

from __future__ import annotations

from services.common.config import DatabaseConfig, ServiceConfig


class IndexConfig(ServiceConfig):
    database: DatabaseConfig = DatabaseConfig()

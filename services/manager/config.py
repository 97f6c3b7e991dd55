"""Configuration of the manager service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from services.common.config import DatabaseConfig, ServiceConfig


class ManagerSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # HOST:PORT of the index service the scheduler asks about sector locations.
    index: str = ""


class ManagerConfig(ServiceConfig):
    database: DatabaseConfig = DatabaseConfig()
    manager: ManagerSection = ManagerSection()

"""Configuration of the worker service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.config import ServiceConfig


class WorkerSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # HOST:PORT of the manager to register with; empty: serve without registering.
    manager: str = ""
    # HOST:PORT of the index service.
    index: str = ""
    # Address peers and the manager use to reach this worker; default: the bound listen address.
    advertise: str = ""
    # Name shown in `sealing workers`; default: the host name.
    name: str = ""
    # Registration retry back-off: doubles from the first delay up to the maximum, with jitter.
    register_retry_initial_s: float = Field(default=0.5, gt=0, le=60)
    register_retry_max_s: float = Field(default=30.0, gt=0, le=3600)
    # Seconds between heartbeats to the manager once registered.
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)


class WorkerConfig(ServiceConfig):
    worker: WorkerSection = WorkerSection()

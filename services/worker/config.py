"""Configuration of the worker service.

Section `[worker]` (environment `SECTORSTORAGE_WORKER_<KEY>`):

manager, index          HOST:PORT of the manager (register, heartbeat, Return results) and of
                        the index (paths, declarations, locks). Without an index the worker
                        serves but cannot attach storage or run tasks. manager may list several
                        managers sharing a database ("m1:9090,m2:9090"): the worker uses the
                        one that leads, and moves on when it fails (failover).
advertise               Address peers and the manager use to reach this worker.
task_types              Task types accepted at start (short names AP PC1 PC2 C1 C2 FIN GET UNS
                        WDP WNP); empty = all. Changeable at run time (Enable/DisableTaskType).
parallel_fetch_limit    Most sector files fetched from peers at once (the reference's 5).
max_tasks               Most asynchronous tasks running at once; 0 = no limit (the manager
                        accounts resources; this is a safety net). Per-type caps: resources.
resources               Resource-table overrides, `{PC1_32G_MAX_CONCURRENT = 4, ...}` (see
                        services/worker/resources.py); the process environment may also set them.
cpus, memory            Override the detected CPU count / physical memory (0 = detect).
no_swap                 Report no swap to the scheduler.
ignore_resources        Ask the scheduler to skip resource accounting for this worker.
compute_backend         `auto` (a GPU when the scheduler grants one, else the CPU), `cpu`, or
                        `cuda:N` to pin every GPU-capable step to one device.
lock_ttl_s              Lease length of the sector locks tasks hold (renewed every third).
storage_heartbeat_s     How often each path's stat goes to the index (the reference's 10 s).
fetch_chunk_bytes       Size of the chunks this worker sends when serving files.
drain_timeout_s         On SIGTERM, how long running tasks may go on before they are stopped and
                        handed back to the manager for a retry (services/worker/drain.py).
bulk_transfer           Serve sector files over the bulk side channel (OpenTransfer: a one-time
                        ticket, then a plain TCP connection fed by sendfile) and use peers'
                        channels when fetching; false: gRPC streams only, both ways.
bulk_streams            Connections a large fetched file (64 MiB and over, size known) is split
                        over on the side channel, one receiving thread each; 1 (the default):
                        one connection. docs/benchmarks.md, issue 20, has the measurements.
pc1_batch_size          PC1 calls of one sector size and proof type labeled together as one task
                        on one core (1 to 8; 1, the default: each PC1 alone, as before). The
                        worker must be able to take that many PC1 at once: see docs/worker.md,
                        "PC1 batches" (MAX_CONCURRENT, cpus, memory, max_tasks).
pc1_batch_wait_ms       How long the first PC1 of a batch waits for the others before the batch
                        runs with the calls it has (services/worker/pc1_batch.py).
bulk_listen             HOST:PORT the side channel binds; default: the listen host, a free port.
bulk_advertise          HOST:PORT peers are told to connect to; default: the advertised host
                        (advertise, else the listen address) with the bound port.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.config import ServiceConfig, parse_host_port
from services.worker.resources import is_override_key, parse_overrides, parse_task_type


class WorkerSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # HOST:PORT of the manager to register with, or several, comma-separated (managers sharing
    # one database: the worker follows the leader); empty: serve without registering.
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
    task_types: list[str] = Field(default_factory=list)
    parallel_fetch_limit: int = Field(default=5, ge=1, le=256)
    max_tasks: int = Field(default=0, ge=0, le=100_000)
    resources: dict[str, str | int | float] = Field(default_factory=dict)
    cpus: int = Field(default=0, ge=0)
    memory: int = Field(default=0, ge=0)
    no_swap: bool = False
    ignore_resources: bool = False
    compute_backend: str = "auto"
    lock_ttl_s: float = Field(default=60.0, ge=5, le=600)
    storage_heartbeat_s: float = Field(default=10.0, gt=0, le=300)
    fetch_chunk_bytes: int = Field(default=1 << 20, ge=4096, le=4 << 20)
    drain_timeout_s: float = Field(default=60.0, ge=0, le=86400)
    bulk_transfer: bool = True
    bulk_streams: int = Field(default=1, ge=1, le=16)
    bulk_listen: str = ""
    bulk_advertise: str = ""
    pc1_batch_size: int = Field(default=1, ge=1, le=8)
    pc1_batch_wait_ms: int = Field(default=5000, ge=0, le=3_600_000)

    @field_validator("bulk_listen", "bulk_advertise")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value:
            parse_host_port(value)
        return value

    @field_validator("task_types")
    @classmethod
    def _task_types(cls, value: list[str]) -> list[str]:
        for name in value:
            parse_task_type(name)
        return value

    @field_validator("resources")
    @classmethod
    def _resources(cls, value: dict[str, str | int | float]) -> dict[str, str | int | float]:
        bad = [k for k in value if not is_override_key(k)]
        if bad:
            raise ValueError(f"{', '.join(bad)}: keys must look like PC1_32G_MAX_CONCURRENT (TASK[_SIZE]_FIELD)")
        parse_overrides(value)
        return value

    @field_validator("compute_backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        text = value.strip().lower()
        if text not in ("auto", "cpu") and not (text.startswith("cuda:") and text[5:].isdigit()):
            raise ValueError("must be auto, cpu or cuda:N")
        return text


class WorkerConfig(ServiceConfig):
    worker: WorkerSection = WorkerSection()

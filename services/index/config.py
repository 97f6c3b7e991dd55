"""Configuration of the index service.

Section `[index]` (environment `SECTORSTORAGE_INDEX_<KEY>`):

heartbeat_timeout_s     A path whose last StorageReportHealth is older than this is unhealthy:
                        skipped by StorageBestAlloc and as a FindSector fetch candidate until it
                        reports again. Default 50 s: the reference's 5 missed 10 s heartbeats.
lock_ttl_default_s      Lease length when a StorageLock request sets no ttl (60 s).
lock_ttl_min_s          Requested ttls are clamped to [min, max] (5 s, 10 min), so a typo can
lock_ttl_max_s          neither make a lock lapse at once nor outlive a dead worker for hours.
lock_retry_max_s        Longest a blocked StorageLock waits before looking again without a
                        wake-up (1 s). Unlocks in this process and, on PostgreSQL, in other
                        replicas wake waiters at once; this bounds the cost of a missed wake-up.
lock_waiting_repeat_s   How often a blocked StorageLock repeats its `waiting` message (10 s).
lock_sweep_interval_s   How often expired leases are deleted (5 s). Expiry takes effect at
                        `expires_at` whatever this is; the sweep only tidies and wakes waiters.
db_threads              Database connections/threads of this process (4). Every RPC is one
                        transaction on one of them.

Section `[database]`: `url` — empty for SQLite at `<data_dir>/index.db`; `sqlite:PATH` or a
PostgreSQL DSN `postgresql://user:pw@host:5432/db` (see services/common/db/url.py). Every index
replica of a fleet points at the same PostgreSQL database.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import DatabaseConfig, ServiceConfig


class IndexSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    heartbeat_timeout_s: float = Field(default=50.0, gt=0, le=86_400)
    lock_ttl_default_s: float = Field(default=60.0, gt=0, le=86_400)
    lock_ttl_min_s: float = Field(default=5.0, gt=0, le=86_400)
    lock_ttl_max_s: float = Field(default=600.0, gt=0, le=86_400)
    lock_retry_max_s: float = Field(default=1.0, gt=0, le=60)
    lock_waiting_repeat_s: float = Field(default=10.0, gt=0, le=3600)
    lock_sweep_interval_s: float = Field(default=5.0, gt=0, le=3600)
    db_threads: int = Field(default=4, ge=1, le=64)

    @model_validator(mode="after")
    def _ttl_order(self) -> IndexSection:
        if not self.lock_ttl_min_s <= self.lock_ttl_default_s <= self.lock_ttl_max_s:
            raise ValueError(
                "lock ttls must satisfy lock_ttl_min_s <= lock_ttl_default_s <= lock_ttl_max_s, got "
                f"{self.lock_ttl_min_s} / {self.lock_ttl_default_s} / {self.lock_ttl_max_s}"
            )
        return self


class IndexConfig(ServiceConfig):
    database: DatabaseConfig = DatabaseConfig()
    index: IndexSection = IndexSection()

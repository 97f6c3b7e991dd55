"""The index's tables, as versioned migrations (component "index").

storage_paths   one row per attached path: metadata, latest stat, last heartbeat. `pk` is a
                compact surrogate key so the million-row declaration table stays small.
sector_files    one row per declared file: (sector, one file type, path), primary flag. The
                primary key serves FindSector; the by-path index serves listing, counting,
                redeclare and the cascade on detach.
sector_locks    one row per lock lease (read/write type masks, owner, expiry). Expired rows are
                ignored by every query and deleted by the sweeper.
storage_reservations  space a worker holds on a path for files it is about to write, so that
                workers sharing one path (network storage) never over-commit it.
Lists (urls, groups, allow_to, miners) are JSON arrays; type filters are bitmasks.
"""

from __future__ import annotations

from services.common.db import Migration

COMPONENT = "index"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "paths, sector files, sector locks",
        (
            """CREATE TABLE storage_paths (
                pk {serial_pk},
                id TEXT NOT NULL UNIQUE,
                urls TEXT NOT NULL,
                weight BIGINT NOT NULL,
                max_storage BIGINT NOT NULL,
                can_seal BOOLEAN NOT NULL,
                can_store BOOLEAN NOT NULL,
                path_groups TEXT NOT NULL,
                allow_to TEXT NOT NULL,
                allow_types INTEGER NOT NULL,
                deny_types INTEGER NOT NULL,
                allow_miners TEXT NOT NULL,
                deny_miners TEXT NOT NULL,
                capacity BIGINT NOT NULL,
                available BIGINT NOT NULL,
                fs_available BIGINT NOT NULL,
                reserved BIGINT NOT NULL,
                max_bytes BIGINT NOT NULL,
                used BIGINT NOT NULL,
                last_heartbeat DOUBLE PRECISION NOT NULL,
                heartbeat_error TEXT NOT NULL,
                attached_at DOUBLE PRECISION NOT NULL
            )""",
            """CREATE TABLE sector_files (
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                file_type SMALLINT NOT NULL,
                path_pk BIGINT NOT NULL REFERENCES storage_paths (pk) ON DELETE CASCADE,
                is_primary BOOLEAN NOT NULL,
                PRIMARY KEY (miner, number, file_type, path_pk)
            ){without_rowid}""",
            "CREATE INDEX sector_files_by_path ON sector_files (path_pk, miner, number, file_type)",
            """CREATE TABLE sector_locks (
                lease_id TEXT NOT NULL PRIMARY KEY,
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                read_types INTEGER NOT NULL,
                write_types INTEGER NOT NULL,
                owner TEXT NOT NULL,
                ttl DOUBLE PRECISION NOT NULL,
                acquired_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX sector_locks_by_sector ON sector_locks (miner, number)",
            "CREATE INDEX sector_locks_by_expiry ON sector_locks (expires_at)",
        ),
    ),
    Migration(
        2,
        "space reservations of paths shared by several workers",
        (
            # One row per reservation: `released_at` 0 while held; a released row still counts
            # until the path's next health report (which then shows the written bytes as used).
            """CREATE TABLE storage_reservations (
                reservation_id TEXT NOT NULL PRIMARY KEY,
                storage_id TEXT NOT NULL,
                owner TEXT NOT NULL,
                bytes BIGINT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                released_at DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX storage_reservations_by_path ON storage_reservations (storage_id)",
        ),
    ),
)

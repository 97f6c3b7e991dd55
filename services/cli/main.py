"""sectorctl: the operator's command line for a sectorstorage fleet.

Connection: `--manager`/`--index` flags or SECTORSTORAGE_MANAGER / SECTORSTORAGE_INDEX, and a
token from `--token`, `--token-file` or SECTORSTORAGE_TOKEN. Tokens are made with
`sectorctl auth create-token` from the fleet's signing key. `--json` prints one JSON document.

Exit codes: 0 success, 1 the service answered with an error, 2 bad usage or configuration,
3 a service could not be reached (or answered UNAVAILABLE).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

from services.cli import connection
from services.cli.commands import auth, proving, sealing, sectors, storage, wait, worker
from services.common.auth import AuthError
from services.common.config import ConfigError as ServiceConfigError

EXIT_RPC_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
GROUPS = (auth, sealing, worker, storage, sectors, proving, wait)


def global_flags(suppress: bool) -> argparse.ArgumentParser:
    """The flags valid before the group and after the verb; after the verb they default to
    SUPPRESS so they don't overwrite what was given before it."""
    parent = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parent.add_argument(
        "--json", action="store_true", default=default(False), help="print one JSON document (for scripts)"
    )
    parent.add_argument(
        "--manager", default=default(None), metavar="HOST:PORT", help="manager address (default: SECTORSTORAGE_MANAGER)"
    )
    parent.add_argument(
        "--index", default=default(None), metavar="HOST:PORT", help="index address (default: SECTORSTORAGE_INDEX)"
    )
    parent.add_argument("--token", default=default(None), help="API token (default: SECTORSTORAGE_TOKEN)")
    parent.add_argument("--token-file", default=default(None), metavar="FILE", help="read the API token from FILE")
    parent.add_argument(
        "--call-timeout",
        dest="timeout",
        type=float,
        default=default(60.0),
        metavar="S",
        help="seconds to wait for each call (default 60)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sectorctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[global_flags(suppress=False)],
    )
    groups = parser.add_subparsers(dest="group", required=True, metavar="GROUP")
    verb_flags = global_flags(suppress=True)
    for module in GROUPS:
        module.register(groups, verb_flags)
    return parser


def _is_connection_failure(exc: grpc.RpcError) -> bool:
    # gRPC's own words for a channel that never connected; a service's UNAVAILABLE (e.g. a
    # worker that cannot reach the index) starts otherwise and names its own dependency.
    details = (exc.details() or "").lower()
    return details.startswith(
        ("failed to connect", "connection refused", "dns resolution failed", "name resolution", "connect failed")
    )


def _hint(conn: connection.Connection | None) -> str:
    target = conn.last_target if conn else None
    if conn is None or target is None:
        return "is the service running?"
    service, source = conn.source_of(target)
    return f"can't reach the {service} at {target}: is it running? (its address comes from {source})"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    conn: connection.Connection | None = None
    try:
        conn = connection.from_args(args)
        code: int = args.func(args, conn)
        return code
    except grpc.RpcError as exc:
        status = exc.code()
        name = status.name if status is not None else "UNKNOWN"
        print(f"sectorctl: {name}: {exc.details()}", file=sys.stderr)
        if status is grpc.StatusCode.UNAVAILABLE:
            if _is_connection_failure(exc):
                print(f"sectorctl: hint: {_hint(conn)}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        if status is grpc.StatusCode.UNAUTHENTICATED:
            print(
                "sectorctl: hint: pass a valid token with --token / --token-file or SECTORSTORAGE_TOKEN",
                file=sys.stderr,
            )
        return EXIT_RPC_ERROR
    except (AuthError, ValueError, connection.ConfigError, ServiceConfigError, OSError) as exc:
        print(f"sectorctl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("sectorctl: interrupted", file=sys.stderr)
        return 130
    finally:
        if conn is not None:
            conn.close()


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.exit(main())

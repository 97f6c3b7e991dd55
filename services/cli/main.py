"""sectorctl: the operator's command line for a sectorstorage fleet.

Connection: `--manager`/`--index` flags or SECTORSTORAGE_MANAGER / SECTORSTORAGE_INDEX, and a
token from `--token` or SECTORSTORAGE_TOKEN. Tokens are made with `sectorctl auth create-token`
from the fleet's signing key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from services.common.auth import AuthError, Permission, create_token, load_or_create_secret


def _secret(args: argparse.Namespace) -> bytes:
    if args.secret_file:
        path = Path(args.secret_file)
        if not path.exists():
            raise AuthError(f"signing key file {path} does not exist")
        return load_or_create_secret(path)
    env = os.environ.get("SECTORSTORAGE_AUTH_SECRET")
    if env:
        return env.encode()
    raise AuthError("no signing key: pass --secret-file (e.g. DATA_DIR/auth.key) or set SECTORSTORAGE_AUTH_SECRET")


def cmd_create_token(args: argparse.Namespace) -> int:
    permission = Permission.parse(args.perm)
    token = create_token(_secret(args), permission, subject=args.subject, ttl_seconds=args.ttl)
    if args.json:
        print(json.dumps({"token": token, "permission": permission.name.lower(), "subject": args.subject}))
    else:
        print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sectorctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    groups = parser.add_subparsers(dest="group", required=True)

    auth = groups.add_parser("auth", help="API tokens").add_subparsers(dest="verb", required=True)
    create = auth.add_parser("create-token", help="print a token granting a permission (and the ones below it)")
    create.add_argument("--perm", required=True, help="read, write or admin")
    create.add_argument("--subject", default="sectorctl", help="who the token is for (shown in logs)")
    create.add_argument("--ttl", type=float, default=None, help="seconds until it expires (default: never)")
    create.add_argument("--secret-file", help="the fleet's signing key file (default: SECTORSTORAGE_AUTH_SECRET)")
    create.set_defaults(func=cmd_create_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except (AuthError, ValueError) as exc:
        print(f"sectorctl: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

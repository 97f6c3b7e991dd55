"""`sectorctl auth`: API tokens, signed locally with the fleet's key (no service is called)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from services.cli import render
from services.cli.connection import Connection
from services.common.auth import DEFAULT_FLEET, AuthError, Permission, create_token, load_or_create_secret

# Tokens expire after 30 days unless asked otherwise: a leaked one stops working by itself.
DEFAULT_TTL_S = 30 * 24 * 3600


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


def create(args: argparse.Namespace, conn: Connection) -> int:
    permission = Permission.parse(args.perm)
    if args.ttl < 0:
        raise AuthError(f"--ttl must be 0 (never expires) or a number of seconds, got {args.ttl:g}")
    fleet = args.fleet or os.environ.get("SECTORSTORAGE_AUTH_FLEET") or DEFAULT_FLEET
    ttl = args.ttl or None
    token = create_token(_secret(args), permission, subject=args.subject, ttl_seconds=ttl, audience=fleet)
    if args.json:
        expires = None if ttl is None else int(time.time() + ttl)
        render.emit_json(
            {
                "token": token,
                "permission": permission.name.lower(),
                "subject": args.subject,
                "fleet": fleet,
                "expires_at": expires,
            }
        )
    else:
        render.emit(token)
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser("auth", help="API tokens", description="sectorctl auth: API tokens.").add_subparsers(
        dest="verb", required=True, metavar="VERB"
    )
    p = verbs.add_parser(
        "create-token", parents=[common], help="print a token granting a permission (and the ones below it)"
    )
    p.add_argument("--perm", required=True, help="read, write or admin")
    p.add_argument("--subject", default="sectorctl", help="who the token is for (shown in logs)")
    p.add_argument(
        "--ttl", type=float, default=DEFAULT_TTL_S, help="seconds until it expires (default: 30 days; 0: never)"
    )
    p.add_argument(
        "--fleet",
        help=f"the fleet it is for, the services' auth.fleet (default: SECTORSTORAGE_AUTH_FLEET or {DEFAULT_FLEET})",
    )
    p.add_argument("--secret-file", help="the fleet's signing key file (default: SECTORSTORAGE_AUTH_SECRET)")
    p.set_defaults(func=create)

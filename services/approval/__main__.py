"""`tapewatch approval`: run the approval service and the trader console (settings from TAPEWATCH_* /
TAPEWATCH_CONFIG). Account tools:

  tapewatch approval add-trader NAME [--role trader|viewer]   store an account (password asked, hashed)
  tapewatch approval hash-password                           print an argon2 hash for the `traders` setting
  tapewatch approval issue-token NAME [--hours H]            print a bearer token for gRPC clients
  tapewatch approval new-api-token                           print a token and the SHA-256 for `api_tokens`
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import secrets
import sys

from services.approval.auth import Accounts, Sessions, hash_password, token_digest
from services.approval.settings import ApprovalSettings
from services.runtime.redis_client import open_redis


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the passwords differ")
    return first


async def _add_trader(settings: ApprovalSettings, name: str, role: str, password: str) -> None:
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        await Accounts(redis, settings).add(name, password, role)  # type: ignore[arg-type]


async def _issue_token(settings: ApprovalSettings, name: str, hours: float) -> str:
    async with open_redis(settings.redis_url, settings.data_dir) as redis:
        account = await Accounts(redis, settings).get(name)
        if account is None:
            raise SystemExit(f"no trader {name}; add one with `tapewatch approval add-trader {name}`")
        sessions = Sessions(redis, settings)
        sessions.ttl_s = int(hours * 3600)
        token, _ = await sessions.open(account.name, account.role, via="token")
        return token


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv:
        from services.approval.service import serve

        asyncio.run(serve(ApprovalSettings.load()))
        return 0
    parser = argparse.ArgumentParser(
        prog="tapewatch approval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-trader", help="store a trader account (argon2-hashed password) in Redis")
    add.add_argument("name")
    add.add_argument("--role", choices=["trader", "viewer"], default="trader")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    hp = sub.add_parser("hash-password", help="print an argon2 hash for the `traders` setting")
    hp.add_argument("--password-stdin", action="store_true")
    tok = sub.add_parser("issue-token", help="print a bearer token for a trader (gRPC clients)")
    tok.add_argument("name")
    tok.add_argument("--hours", type=float, default=12.0)
    sub.add_parser("new-api-token", help="print a random token and its SHA-256 for `api_tokens`")
    args = parser.parse_args(argv)
    try:
        if args.command == "add-trader":
            password = _read_password(args.password_stdin)
            asyncio.run(_add_trader(ApprovalSettings.load(), args.name, args.role, password))
            print(f"trader {args.name} ({args.role}) stored", file=sys.stderr)
        elif args.command == "hash-password":
            print(hash_password(_read_password(args.password_stdin)))
        elif args.command == "issue-token":
            print(asyncio.run(_issue_token(ApprovalSettings.load(), args.name, args.hours)))
        elif args.command == "new-api-token":
            token = secrets.token_urlsafe(32)
            print(f"token:        {token}\ntoken_sha256: {token_digest(token)}")
    except ValueError as exc:
        print(f"tapewatch approval {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

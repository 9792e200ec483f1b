"""`tapewatch approval add-trader` / `issue-token`: accounts stored hashed, tokens that authenticate."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
import redis.asyncio as aioredis

from services.approval.auth import ACCOUNTS_KEY, Accounts, Sessions
from services.approval.settings import ApprovalSettings
from services.runtime.redis_server import RedisStack

pytestmark = pytest.mark.integration


async def tapewatch(redis_stack: RedisStack, *args: str, stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", *args,
        env={**os.environ, "REDIS_URL": redis_stack.url},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(stdin.encode())
    return proc.returncode or 0, out.decode(), err.decode()


async def test_add_trader_then_issue_a_token(redis: aioredis.Redis, redis_stack: RedisStack) -> None:
    code, _, err = await tapewatch(redis_stack, "approval", "add-trader", "carol", "--password-stdin",
                                   stdin="changeme\n")  # fmt: skip
    assert code == 2 and "password" in err
    assert await redis.hget(ACCOUNTS_KEY, "carol") is None
    code, _, err = await tapewatch(
        redis_stack, "approval", "add-trader", "carol", "--role", "viewer", "--password-stdin",
        stdin="granite-Otter-93-lake\n",
    )  # fmt: skip
    assert code == 0, err
    stored = await redis.hget(ACCOUNTS_KEY, "carol")
    assert stored is not None and b"granite" not in stored and b"$argon2id$" in stored
    settings = ApprovalSettings.load(redis_url=redis_stack.url)
    account = await Accounts(redis, settings).verify("carol", "granite-Otter-93-lake")
    assert account is not None and account.role == "viewer"
    assert await Accounts(redis, settings).verify("carol", "granite-Otter-93-lakE") is None
    code, out, err = await tapewatch(redis_stack, "approval", "issue-token", "carol", "--hours", "1")
    assert code == 0, err
    identity = await Sessions(redis, settings).lookup(out.strip())
    assert identity is not None and (identity.name, identity.role) == ("carol", "viewer")

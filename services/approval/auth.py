"""Who is at the desk: trader accounts (argon2 hashes), sessions / bearer tokens, login throttling.

One session is one random token: the console keeps it in an HttpOnly cookie, a gRPC client sends it as
`authorization: Bearer <token>`. Redis stores only its SHA-256, with the trader, the role and the
session's CSRF token, and forgets it after session_ttl_s.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import redis.asyncio as aioredis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.approval.settings import ApprovalSettings, Role
from services.runtime.errors import PermissionDenied, Unauthenticated

ACCOUNTS_KEY = "tw:approval:traders"
SESSION_PREFIX = "tw:approval:session:"
FAILURES_PREFIX = "tw:approval:login_failures:"
MIN_PASSWORD_LEN = 12
PLACEHOLDERS = {"changeme", "change-me", "password", "secret", "admin", "letmein", "tapewatch", "example"}

_hasher = PasswordHasher()
# A real hash to verify against when the name is unknown, so timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    check_password_strength(password)
    return _hasher.hash(password)


def check_password_strength(password: str) -> None:
    lowered = password.lower()
    if len(password) < MIN_PASSWORD_LEN:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LEN} characters")
    if any(p in lowered for p in PLACEHOLDERS) or len(set(password)) < 5:
        raise ValueError("password looks like a placeholder; choose a real one")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    csrf: str = ""
    via: str = "session"  # session | api_token | sso

    @property
    def can_decide(self) -> bool:
        return self.role == "trader"

    def require_trader(self, what: str) -> None:
        if not self.can_decide:
            raise PermissionDenied(f"{self.name} is a {self.role}: only traders may {what}")


@dataclass(frozen=True)
class Account:
    name: str
    password_hash: str
    role: Role


class Accounts:
    """Accounts from the settings (authoritative) and those added with `tapewatch approval add-trader`."""

    def __init__(self, redis: aioredis.Redis, settings: ApprovalSettings) -> None:
        self.redis = redis
        self.settings = settings
        self.configured = {t.name: Account(t.name, t.password_hash, t.role) for t in settings.traders}

    async def get(self, name: str) -> Account | None:
        if name in self.configured:
            return self.configured[name]
        raw = await self.redis.hget(ACCOUNTS_KEY, name)
        if raw is None:
            return None
        doc = json.loads(raw)
        return Account(name, doc["password_hash"], doc["role"])

    async def add(self, name: str, password: str, role: Role = "trader") -> None:
        if name in self.configured:
            raise ValueError(f"{name} is configured in the settings; change it there")
        doc = {"password_hash": hash_password(password), "role": role, "created_ms": int(time.time() * 1000)}
        await self.redis.hset(ACCOUNTS_KEY, name, json.dumps(doc))

    async def verify(self, name: str, password: str) -> Account | None:
        """The account when the password matches; None otherwise (also for unknown names)."""
        account = await self.get(name)
        stored = account.password_hash if account else _DUMMY_HASH
        loop = asyncio.get_running_loop()
        try:  # argon2 takes tens of ms of CPU: keep the event loop free
            await loop.run_in_executor(None, _hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return account


class Sessions:
    def __init__(self, redis: aioredis.Redis, settings: ApprovalSettings) -> None:
        self.redis = redis
        self.ttl_s = settings.session_ttl_s
        self.api_tokens = {t.token_sha256: t for t in settings.api_tokens}
        self.max_failures = settings.login_max_failures
        self.lockout_s = settings.login_lockout_s

    async def open(self, name: str, role: Role, via: str = "session") -> tuple[str, Identity]:
        token = secrets.token_urlsafe(32)
        identity = Identity(name, role, secrets.token_urlsafe(24), via)
        key = SESSION_PREFIX + token_digest(token)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"trader": name, "role": role, "csrf": identity.csrf, "via": via})
            pipe.expire(key, self.ttl_s)
            await pipe.execute()
        return token, identity

    async def lookup(self, token: str) -> Identity | None:
        if not token:
            return None
        digest = token_digest(token)
        api = self.api_tokens.get(digest)
        if api is not None:
            return Identity(api.name, api.role, via="api_token")
        doc = await self.redis.hgetall(SESSION_PREFIX + digest)
        if not doc:
            return None
        return Identity(
            doc[b"trader"].decode(), doc[b"role"].decode(), doc[b"csrf"].decode(), doc[b"via"].decode()
        )

    async def close(self, token: str) -> None:
        await self.redis.delete(SESSION_PREFIX + token_digest(token))

    async def locked_out(self, name: str) -> bool:
        count = await self.redis.get(FAILURES_PREFIX + name)
        return count is not None and int(count) >= self.max_failures

    async def record_failure(self, name: str) -> None:
        key = FAILURES_PREFIX + name
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.lockout_s)
            await pipe.execute()

    async def clear_failures(self, name: str) -> None:
        await self.redis.delete(FAILURES_PREFIX + name)


def bearer_token(metadata: Mapping[str, str | bytes]) -> str:
    value = metadata.get("authorization", "")
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def identify_call(sessions: Sessions, metadata: Mapping[str, str | bytes]) -> Identity:
    """The caller of a gRPC method, from `authorization: Bearer <token>`, or UNAUTHENTICATED."""
    token = bearer_token(metadata)
    if not token:
        raise Unauthenticated("missing credentials: send 'authorization: Bearer <token>' in the metadata")
    identity = await sessions.lookup(token)
    if identity is None:
        raise Unauthenticated("unknown or expired token: log in again or issue a new token")
    return identity


def same_secret(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())

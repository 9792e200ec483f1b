"""Access settings fail fast: only argon2 hashes, no placeholders, SSO only with named proxies."""

from __future__ import annotations

import pytest

from services.approval.auth import Identity, bearer_token, check_password_strength, hash_password
from services.approval.settings import ApprovalSettings
from services.runtime.errors import PermissionDenied
from services.runtime.settings import SettingsError

GOOD_HASH = hash_password("amber-Falcon-42-river")


@pytest.mark.parametrize(
    "password_hash", ["changeme", "hunter2-but-long", "", "$argon2id$", "${TRADER_HASH}"]
)
def test_trader_accounts_take_only_argon2_hashes(password_hash: str) -> None:
    with pytest.raises(SettingsError, match=r"traders\.0\.password_hash"):
        ApprovalSettings.load(traders=[{"name": "alice", "password_hash": password_hash}])


def test_a_real_hash_is_accepted_and_roles_default_to_trader() -> None:
    settings = ApprovalSettings.load(
        traders=[
            {"name": "alice", "password_hash": GOOD_HASH},
            {"name": "vera", "password_hash": GOOD_HASH, "role": "viewer"},
        ]
    )
    assert [(t.name, t.role) for t in settings.traders] == [("alice", "trader"), ("vera", "viewer")]


@pytest.mark.parametrize("digest", ["0" * 64, "abc", "g" * 64])
def test_api_tokens_take_a_real_sha256(digest: str) -> None:
    with pytest.raises(SettingsError, match=r"api_tokens\.0\.token_sha256"):
        ApprovalSettings.load(api_tokens=[{"name": "bot", "token_sha256": digest}])


def test_sso_needs_trusted_proxy_addresses() -> None:
    with pytest.raises(SettingsError, match="sso_proxies"):
        ApprovalSettings.load(sso_header="X-Forwarded-User")
    with pytest.raises(SettingsError, match="sso_proxies"):
        ApprovalSettings.load(sso_header="X-Forwarded-User", sso_proxies=["proxy.local"])
    settings = ApprovalSettings.load(sso_header="X-Forwarded-User", sso_proxies=["10.0.0.5"])
    assert settings.sso_proxies == ("10.0.0.5",)


@pytest.mark.parametrize("password", ["short-1A", "changeme-changeme", "Password12345", "aaaaaaaaaaaaaaa"])
def test_weak_or_placeholder_passwords_are_refused(password: str) -> None:
    with pytest.raises(ValueError):
        check_password_strength(password)


def test_bearer_token_from_metadata() -> None:
    assert bearer_token({"authorization": "Bearer abc.def"}) == "abc.def"
    assert bearer_token({"authorization": b"bearer xyz"}) == "xyz"
    assert bearer_token({"authorization": "Basic YWxpY2U6eA=="}) == ""
    assert bearer_token({}) == ""


def test_viewers_may_not_decide() -> None:
    Identity("alice", "trader").require_trader("decide")
    with pytest.raises(PermissionDenied, match="vera is a viewer"):
        Identity("vera", "viewer").require_trader("decide")

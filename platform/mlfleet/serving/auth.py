"""API keys: stored as sha256 digests in settings, compared in constant time.

A key is shown once when created (``mlfleet keys create``); only its digest is configured,
so a leaked settings file does not leak a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from pydantic import BaseModel, Field, field_validator

Scope = Literal["predict", "admin"]
KEY_PREFIX = "mlf_"


class ApiKey(BaseModel):
    """One configured key: a name for logs, the digest and what it may do."""

    name: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the key")
    scopes: list[Scope] = Field(min_length=1)

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def digest(key: str) -> str:
    """The hex sha256 of a key, as configured."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def authenticate(presented: str | None, keys: list[ApiKey]) -> ApiKey | None:
    """The configured key matching ``presented``, compared in constant time, or None.

    Every configured digest is compared (no early exit), so timing reveals neither which
    key matched nor how many characters did.
    """
    if not presented:
        return None
    candidate = digest(presented)
    found: ApiKey | None = None
    for key in keys:
        if hmac.compare_digest(candidate, key.sha256):
            found = key
    return found


def bearer(header: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>``."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None

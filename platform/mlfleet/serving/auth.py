"""API keys: stored as sha256 digests in settings, compared in constant time.

A key is shown once when created (``mlfleet keys create``); only its digest is configured,
so a leaked settings file does not leak a usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# A key entry is the item type of the MLFLEET_API_KEYS setting, so it is defined there.
from mlfleet.settings import ApiKey

KEY_PREFIX = "mlf_"


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


__all__ = ["KEY_PREFIX", "ApiKey", "authenticate", "bearer", "digest", "new_key"]

"""API keys: stored as sha256 digests in settings, compared in constant time.

A key is shown once when created (``mlfleet keys create``); only its digest is configured,
so a leaked settings file does not leak a usable key.

Without keys (keyless mode) the gateway serves loopback clients only, whatever address it
was deployed on: :func:`keyless_refusal` says why a request must be refused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from functools import lru_cache

# A key entry is the item type of the MLFLEET_API_KEYS setting, so it is defined there.
from mlfleet.settings import ApiKey

KEY_PREFIX = "mlf_"
# Keyless mode: admin routes need this header set to "1". A browser sends a custom header
# cross-origin only after a CORS preflight, which the gateway never grants, so a web page
# a developer opens cannot fire a promotion or rollback at a local gateway.
ADMIN_HEADER = "X-Mlfleet-Admin"


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


@lru_cache(maxsize=256)
def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an IP address as a peer reports it) is a loopback address.

    IPv4-mapped IPv6 addresses (``::ffff:127.0.0.1``) count as their IPv4 address; a
    missing or unparsable address does not count.
    """
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


@lru_cache(maxsize=256)
def is_loopback_host_header(value: str | None) -> bool:
    """Whether a ``Host`` header names this machine's loopback (``localhost``, 127.x, ::1).

    A page on another site that rebinds its DNS name to 127.0.0.1 still sends its own name
    here, so keyless mode refuses it.
    """
    if not value:
        return False
    host = value.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host == "localhost" or host.endswith(".localhost") or is_loopback(host)


def keyless_refusal(peer: str | None, host_header: str | None, behind_haproxy: bool) -> str | None:
    """Why a request to a gateway without API keys must be refused, or None to serve it.

    Args:
        peer: The client address the gateway's HTTP server saw (behind Serve's Python proxy,
            the address that proxy saw).
        host_header: The request's ``Host`` header.
        behind_haproxy: Whether Serve's HAProxy ingress forwards the requests; it does not
            pass the client's address on, so no request can be told apart from a local one.
    """
    if behind_haproxy:
        return (
            "this gateway has no API keys and sits behind HAProxy, which hides the client's "
            "address: configure MLFLEET_API_KEYS"
        )
    if not is_loopback(peer):
        return (
            "this gateway has no API keys and serves this machine only (loopback clients); "
            "configure MLFLEET_API_KEYS to serve the network"
        )
    if not is_loopback_host_header(host_header):
        return (
            "this gateway has no API keys and answers only requests addressed to localhost "
            "or a loopback address"
        )
    return None


__all__ = [
    "ADMIN_HEADER",
    "KEY_PREFIX",
    "ApiKey",
    "authenticate",
    "bearer",
    "digest",
    "is_loopback",
    "is_loopback_host_header",
    "keyless_refusal",
    "new_key",
]

"""Who may see the dashboard and act from it: keys, the session cookie, CSRF tokens.

- A key with the ``dashboard`` scope views; one with ``admin`` views and acts (promote,
  roll back). The key comes as a header (``Authorization: Bearer``, ``X-API-Key``) or as the
  session cookie the key form sets.
- The cookie holds the key itself (HttpOnly, so page scripts cannot read it; SameSite=Strict,
  so no other site's page makes the browser send it; Secure behind https; 8 hours). It works
  across gateway replicas without shared state, and removing the key from MLFLEET_API_KEYS
  ends every session at once. It is a credential for the dashboard's routes only: the API
  never reads cookies. The key is never written into a page, a redirect or a log line.
- Forms that change something carry a CSRF token: HMAC(key, nonce) over a random nonce kept
  in a second SameSite=Strict cookie. Only a page of this origin, opened with that key, has
  both. A request whose ``Origin`` is another origin is refused as well.
- Without keys (authentication off, the gateway on 127.0.0.1), only loopback peers may view
  and act, with the same CSRF token (keyed by the empty string), so that another site's page
  cannot make a local browser promote.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from mlfleet.errors import MlfleetError
from mlfleet.serving.auth import authenticate, bearer
from mlfleet.settings import ApiKey

KEY_COOKIE = "mlfleet_key"
CSRF_COOKIE = "mlfleet_csrf"
SESSION_SECONDS = 8 * 3600
VIEW_SCOPES = frozenset({"dashboard", "admin"})
COOKIE_SAFE = re.compile(r"^[A-Za-z0-9_\-.~]{1,256}$")  # keys `mlfleet keys create` makes


class DashboardDenied(MlfleetError):
    """No usable credential (401), or one without the scope the page needs (403)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.http_status = status


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the key's name (None without keys) and whether it may act."""

    name: str | None
    admin: bool
    secret: str  # the presented key ("" without keys): what CSRF tokens are keyed with

    def csrf(self, nonce: str) -> str:
        """The CSRF token of this viewer's forms for ``nonce``."""
        return hmac.new(self.secret.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def is_loopback(request: Request) -> bool:
    """Whether the peer is this machine."""
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def presented_key(request: Request) -> str | None:
    """The key in the headers, else in the session cookie."""
    return (
        bearer(request.headers.get("authorization"))
        or request.headers.get("x-api-key")
        or request.cookies.get(KEY_COOKIE)
    )


def viewer(request: Request, keys: list[ApiKey]) -> Viewer:
    """The viewer of a dashboard page.

    Raises:
        DashboardDenied: 401 without a valid key, 403 for a key without the scope (or, with
            authentication off, for a peer that is not on this machine).
    """
    if not keys:
        if not is_loopback(request):
            raise DashboardDenied(
                403, "forbidden", "authentication is off: the dashboard answers this machine only"
            )
        return Viewer(name=None, admin=True, secret="")
    presented = presented_key(request)
    key = authenticate(presented, keys)
    if key is None or presented is None:
        raise DashboardDenied(401, "unauthorized", "a key with the dashboard or admin scope")
    if not VIEW_SCOPES & set(key.scopes):
        raise DashboardDenied(403, "forbidden", "this key lacks the 'dashboard' scope")
    return Viewer(name=key.name, admin="admin" in key.scopes, secret=presented)


def login(presented: str, keys: list[ApiKey]) -> ApiKey:
    """The key a login form posted, if it may view the dashboard and fits in a cookie.

    Raises:
        DashboardDenied: as :func:`viewer` does.
    """
    key = authenticate(presented.strip(), keys)
    if key is None:
        raise DashboardDenied(401, "unauthorized", "that key is not valid")
    if not VIEW_SCOPES & set(key.scopes):
        raise DashboardDenied(403, "forbidden", "this key lacks the 'dashboard' scope")
    if not COOKIE_SAFE.match(presented.strip()):
        raise DashboardDenied(
            400, "bad_key", "this key cannot be kept in a cookie: send it as a header instead"
        )
    return key


def _secure(request: Request) -> bool:
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip().lower() == "https"


def _keep(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def set_session(response: Response, request: Request, key: str) -> None:
    """Keep ``key`` in the session cookie (see the module docstring)."""
    _keep(response, request, KEY_COOKIE, key)


def end_session(response: Response) -> None:
    """Forget the session cookie."""
    response.delete_cookie(KEY_COOKIE, path="/", httponly=True, samesite="strict")


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """The browser's CSRF nonce, and whether it is new (then :func:`keep_nonce` it)."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if re.fullmatch(r"[A-Za-z0-9_\-]{16,64}", nonce):
        return nonce, False
    return secrets.token_urlsafe(24), True


def keep_nonce(response: Response, request: Request, nonce: str) -> None:
    """Set the CSRF nonce cookie."""
    _keep(response, request, CSRF_COOKIE, nonce)


def same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def check_csrf(request: Request, who: Viewer, token: str) -> None:
    """Refuse a state-changing form without this session's token or from another origin.

    Raises:
        DashboardDenied: 403.
    """
    nonce = request.cookies.get(CSRF_COOKIE, "")
    expected = who.csrf(nonce) if nonce else ""
    if not same_origin(request) or not expected or not hmac.compare_digest(expected, token):
        raise DashboardDenied(
            403, "csrf", "the form is stale or came from another site: reload the page"
        )


__all__ = [
    "CSRF_COOKIE",
    "KEY_COOKIE",
    "DashboardDenied",
    "Viewer",
    "check_csrf",
    "csrf_nonce",
    "end_session",
    "keep_nonce",
    "login",
    "same_origin",
    "set_session",
    "viewer",
]

"""Who may use the dashboard: holders of the cluster token, and browsers that opened a
login link.

A login link carries a code, `<unix time>.<nonce>.<HMAC(token, time.nonce)>`, that any
process holding the token can mint without asking the dashboard (start --head and
init() print one), and that works once, within dashboard_login_ttl_s. Opening it sets
a random session cookie (HttpOnly, SameSite=Strict) that this dashboard process keeps in
memory; API clients send the token itself instead (`Authorization: Bearer <token>`).
Without a cluster token (auth disabled) the dashboard is as open as the cluster.
"""
import hashlib
import hmac
import secrets
import time
from typing import Dict, Optional, Set

from aiohttp import web

from ray_common.config import config

LOGIN_PATH = "/login"
COOKIE = "ray_core_dashboard"


def _signature(token: str, message: str) -> str:
    return hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()[:32]


def login_link(base_url: str, token: Optional[str]) -> str:
    """A one-time login link to the dashboard at `base_url` (the bare URL without auth)."""
    if not token:
        return base_url
    message = f"{int(time.time())}.{secrets.token_hex(8)}"
    return f"{base_url}{LOGIN_PATH}?code={message}.{_signature(token, message)}"


class Auth:
    """The dashboard's gate: an aiohttp middleware and the login handler."""

    def __init__(self, token: Optional[str]):
        self._token = token or None
        self._sessions: Set[str] = set()
        self._used: Dict[str, float] = {}     # nonce -> when its code expires

    def _code_ok(self, code: str) -> bool:
        try:
            stamp, nonce, signature = code.split(".")
            issued = int(stamp)
        except ValueError:
            return False
        now = time.time()
        self._used = {n: t for n, t in self._used.items() if t > now}
        if nonce in self._used or not issued <= now + 60 or \
                now > issued + config.dashboard_login_ttl_s:
            return False
        if not hmac.compare_digest(signature, _signature(self._token, f"{stamp}.{nonce}")):
            return False
        self._used[nonce] = issued + config.dashboard_login_ttl_s
        return True

    def _allowed(self, request: web.Request) -> bool:
        if self._token is None or request.cookies.get(COOKIE) in self._sessions:
            return True
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and \
            hmac.compare_digest(header[len("Bearer "):].encode(), self._token.encode())

    async def login(self, request: web.Request) -> web.StreamResponse:
        if self._token is None:
            raise web.HTTPFound("/")
        if not self._code_ok(request.query.get("code", "")):
            return _refused("this login link is not valid: it was used already, it expired, "
                            "or it belongs to another cluster")
        session = secrets.token_urlsafe(24)
        self._sessions.add(session)
        redirect = web.HTTPFound("/")
        redirect.set_cookie(COOKIE, session, httponly=True, samesite="Strict", path="/")
        raise redirect

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        if request.path == LOGIN_PATH or self._allowed(request):
            return await handler(request)
        return _refused("open the login link that `ray_core start --head` or init() printed, "
                        "or send the cluster token as `Authorization: Bearer <token>`")


def _refused(why: str) -> web.Response:
    return web.json_response({"error": f"ray_core dashboard: request refused: {why}"},
                             status=401)

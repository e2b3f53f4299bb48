"""The dashboard's gate without a cluster: one-time login codes, session cookies, the
Bearer token (ray_core/dashboard/auth.py), on an in-process aiohttp app."""
import asyncio
import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ray_common.config import config
from ray_core.dashboard.auth import COOKIE, Auth, _signature, login_link

TOKEN = "0123456789abcdef"


def run_app(auth: Auth, steps):
    """Run `steps(client)` against an app with one page behind `auth`."""
    async def page(request):
        return web.json_response({"ok": True})

    async def main():
        app = web.Application(middlewares=[auth.middleware])
        app.router.add_get("/", page)
        app.router.add_get("/login", auth.login)
        async with TestClient(TestServer(app)) as client:
            return await steps(client)
    return asyncio.run(main())


def code_of(link: str) -> str:
    return link.split("code=", 1)[1]


def test_a_login_code_works_once_and_sets_a_session_cookie():
    auth = Auth(TOKEN)
    code = code_of(login_link("http://h:1", TOKEN))

    async def steps(client):
        assert (await client.get("/")).status == 401
        first = await client.get(f"/login?code={code}", allow_redirects=False)
        assert first.status == 302 and COOKIE in first.cookies
        assert (await client.get("/")).status == 200       # the cookie jar sends it
        client.session.cookie_jar.clear()
        again = await client.get(f"/login?code={code}", allow_redirects=False)
        assert again.status == 401
        assert (await client.get("/")).status == 401
    run_app(auth, steps)


def test_forged_expired_and_foreign_codes_are_refused():
    auth = Auth(TOKEN)
    old = f"{int(time.time()) - config.dashboard_login_ttl_s - 10}.aa"
    assert not auth._code_ok(f"{old}.{_signature(TOKEN, old)}")
    assert not auth._code_ok(code_of(login_link("http://h:1", "another cluster's token")))
    fresh = f"{int(time.time())}.bb"
    assert not auth._code_ok(f"{fresh}.{'0' * 32}")
    assert not auth._code_ok("not a code")
    assert auth._code_ok(f"{fresh}.{_signature(TOKEN, fresh)}")


def test_the_token_as_bearer_and_a_cluster_without_auth():
    async def with_token(client):
        assert (await client.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).status \
            == 200
        assert (await client.get("/", headers={"Authorization": "Bearer wrong"})).status \
            == 401
    run_app(Auth(TOKEN), with_token)

    async def open_cluster(client):
        assert (await client.get("/")).status == 200
    run_app(Auth(None), open_cluster)
    assert login_link("http://h:1", None) == "http://h:1"

"""`python -m ray_core.dashboard.server`: the head's dashboard process (aiohttp).

It serves the pages (static/: one page, its script and its style; the script asks
/api/ every dashboard_poll_ms and redraws, so pages update without reloading) and the
JSON API (api.py), behind the cluster token (auth.py). It listens on the socket its
head bound (launcher.py) and holds no state of the cluster: every answer is read
through the state API at the moment it is asked.
"""
import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

from aiohttp import web

from ray_common import rpc
from ray_common.logging import setup_process_logging
from ray_common.process import die_with_parent

from ray_core.dashboard import api
from ray_core.dashboard.auth import LOGIN_PATH, Auth

logger = logging.getLogger("ray_core.dashboard.server")  # __name__ is "__main__" under -m
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(os.path.join(STATIC, "index.html"))


def build_app(gcs_address: str, token) -> web.Application:
    auth = Auth(token)
    app = web.Application(middlewares=[auth.middleware])
    app.router.add_get("/", _index)
    app.router.add_get(LOGIN_PATH, auth.login)
    app.router.add_static("/static/", STATIC)
    api.add_routes(app, gcs_address)
    return app


async def serve(args) -> None:
    runner = web.AppRunner(build_app(args.gcs_address, rpc.auth_token()), access_log=None)
    await runner.setup()
    sock = socket.socket(fileno=args.fd)
    await web.SockSite(runner, sock).start()
    logger.info("Dashboard of %s serving at %s:%d", args.gcs_address, *sock.getsockname()[:2])
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await runner.cleanup()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ray_core.dashboard.server")
    parser.add_argument("--gcs-address", required=True)
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--die-with-parent", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.die_with_parent:
        die_with_parent()
    setup_process_logging("dashboard", os.path.join(args.session_dir, "logs"))
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

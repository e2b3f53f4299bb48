"""Every gRPC server and channel of the project is made here.

What applies to all RPCs lives in this one module:
- one asyncio event-loop thread per process (`io_loop()`), like Ray's io_service, that
  carries all of the process's gRPC traffic; code outside it calls `run_sync(coro)`;
- one cached channel per address, with the project's message-size limits;
- the cluster token: servers reject calls whose `ray-core-token` metadata is missing or
  wrong (UNAUTHENTICATED, saying where the token is looked for); stubs made by `stub()`
  attach it to every call;
- bad input: a call refused for its token, or for a body that is not its method's
  message, logs one line naming the caller; grpc itself drops what is not HTTP/2 and
  clients that do not finish the handshake in time;
- deadlines and retry with backoff for idempotent calls (`call_with_retry`), and one
  log line for a call that finally failed.
Generated stubs and coroutines that use them must run on the io loop: grpc.aio binds a
channel to the loop it was made on.
"""
import asyncio
import functools
import hmac
import inspect
import logging
import os
import random
import threading
import time
import traceback
from typing import Any, Awaitable, Callable, Dict, Iterable, Optional, Tuple

import grpc
import grpc.aio

from ray_common.config import config

logger = logging.getLogger(__name__)

TOKEN_METADATA_KEY = "ray-core-token"
# The framed endpoints (task socket, object transfer) refuse a token frame longer than
# this before reading it; gRPC could not carry a longer one either (8 KiB of headers).
MAX_TOKEN_BYTES = 4096
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_loop: Optional[asyncio.AbstractEventLoop] = None
_loop_thread: Optional[threading.Thread] = None
_loop_lock = threading.Lock()
_channels: Dict[str, grpc.aio.Channel] = {}
_token_override: Optional[str] = None
# Set by ray_common.metrics in the processes that export metrics: called with (method,
# seconds of a unary handler or None, failed) after each call. Read when a method's
# guarded handler is built, so a process without metrics pays nothing per call.
_call_observer: Optional[Callable[[str, Optional[float], bool], None]] = None


# ---- the io loop -----------------------------------------------------------------

def io_loop() -> asyncio.AbstractEventLoop:
    """The process's io loop, started on first use in a daemon thread."""
    global _loop, _loop_thread
    if _loop is not None:
        return _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run():
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _loop_thread = threading.Thread(target=run, name="ray_core_io", daemon=True)
            _loop_thread.start()
            ready.wait()
            _loop = loop
    return _loop


def in_io_thread() -> bool:
    return _loop_thread is not None and threading.current_thread() is _loop_thread


def run_sync(coro: Awaitable, timeout: Optional[float] = None) -> Any:
    """Run a coroutine on the io loop and wait for its result from another thread."""
    if in_io_thread():
        coro.close()
        raise RuntimeError("run_sync called on the io loop thread: it would wait on itself")
    future = asyncio.run_coroutine_threadsafe(coro, io_loop())
    return future.result(timeout)


def spawn(coro: Awaitable) -> "asyncio.Future":
    """Schedule a coroutine on the io loop from any thread without waiting."""
    return asyncio.run_coroutine_threadsafe(coro, io_loop())


class SoonOnLoop:
    """Run `fn` on `loop` soon, once for any number of requests made before it runs.

    request() takes no lock and only appends to the loop's queue, so any thread may
    call it anywhere -- inside the garbage collector, under any lock. The flag drops
    before fn runs, so a request made while fn runs is served by one more run.
    """
    __slots__ = ("_loop", "_fn", "_pending")

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], None]):
        self._loop = loop
        self._fn = fn
        self._pending = False

    def request(self) -> None:
        if self._pending:
            return
        self._pending = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:    # the loop is closed: this process is ending
            self._pending = False

    def _run(self) -> None:
        self._pending = False
        self._fn()


# ---- the cluster token -------------------------------------------------------------

def token_file_path() -> str:
    return config.auth_token_file or os.path.join(config.temp_dir, "auth_token")


def set_auth_token(token: Optional[str]) -> None:
    """Use this token for this process's servers and calls (the CLI and init() set it)."""
    global _token_override
    _token_override = token


def auth_token() -> Optional[str]:
    """The cluster token: set explicitly, else RAY_CORE_AUTH_TOKEN, else the token file."""
    if _token_override is not None:
        return _token_override or None
    if config.auth_token:
        return config.auth_token
    try:
        with open(token_file_path()) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _token_fault(has_token: bool) -> str:
    return "a wrong cluster token" if has_token else "no cluster token"


def _denied_message(has_token: bool) -> str:
    return (f"ray_core: request refused, {_token_fault(has_token)}: set RAY_CORE_AUTH_TOKEN "
            f"(or --auth-token) to the cluster's token (its head's session folder holds it, "
            f"auth_token); drivers and nodes on the head's machine find it through "
            f"{os.path.join(config.temp_dir, 'ray_current_cluster')}")


class _Malformed:
    """Stands in for a request whose body did not parse, so that the handler wrapper
    (which sees the caller's address) can refuse it; a deserializer cannot."""
    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error


class _GuardInterceptor(grpc.aio.ServerInterceptor):
    """Stands before every handler of a server and refuses, with one log line naming the
    caller: calls without the cluster token (UNAUTHENTICATED), calls of a method this
    process does not implement (UNIMPLEMENTED), and calls whose body is not the method's
    protobuf message (INVALID_ARGUMENT); a handler that raises gets one such line too.
    Left to grpc, all but the first become tracebacks in grpc's own logger, which goes
    nowhere. A method's guarded handler is built once (this runs on every call)."""

    def __init__(self, token: Optional[str]):
        self._token = token.encode() if token else None
        self._guarded: Dict[str, Any] = {}

    async def intercept_service(self, continuation, details):
        method = details.method
        if self._token is not None:
            sent = None
            for key, value in details.invocation_metadata or ():
                if key == TOKEN_METADATA_KEY:
                    sent = value.encode() if isinstance(value, str) else value
            if sent is None or not hmac.compare_digest(sent, self._token):
                handler = await continuation(details)
                if handler is None:
                    return None
                return _refusing_handler(handler, method, grpc.StatusCode.UNAUTHENTICATED,
                                         _token_fault(sent is not None),
                                         _denied_message(sent is not None))
        guarded = self._guarded.get(method)
        if guarded is None:
            handler = await continuation(details)
            if handler is None:
                return None
            guarded = self._guarded[method] = _guarded_handler(handler, method)
        return guarded


def _refusing_handler(handler, method: str, code: grpc.StatusCode, fault: str, message: str):
    """A handler of the same call type as `handler` that logs `fault` with the caller's
    address and aborts with `code`. It never parses the body."""

    async def refuse(request, context):
        logger.warning("Refused %s from %s: %s", method, context.peer(), fault)
        await context.abort(code, message)

    async def refuse_stream(request, context):
        await refuse(request, context)
        yield  # pragma: no cover - makes this an async generator

    kwargs = dict(request_deserializer=None, response_serializer=handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse, **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse, **kwargs)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, **kwargs)


# What a handler raises on purpose: context.abort()'s answer, or the call's cancellation.
_PASSED_ON = (grpc.aio.AbortError, asyncio.CancelledError)


async def _refuse_malformed(context, method: str, request: _Malformed):
    logger.warning("Refused %s from %s: malformed request body (%s)", method, context.peer(),
                   request.error)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"ray_core: the request body of {method} is not a valid protobuf "
                        f"message of its type: {request.error}")


def _log_handler_failure(method: str, context, error: Exception) -> None:
    """One line for a handler that raised: grpc would answer UNKNOWN and log the traceback
    to its own logger, which no process of the project writes anywhere."""
    # Frame 0 is the guard; frame 1 the servicer's method; the last, where it raised.
    frames = [f"{os.path.basename(frame.f_code.co_filename)}:{line}"
              for frame, line in traceback.walk_tb(error.__traceback__)]
    where = frames[-1] if len(frames) < 3 else f"{frames[1]}, at {frames[-1]}"
    logger.warning("Call %s from %s failed in its handler: %s: %s (raised in %s)", method,
                   context.peer(), type(error).__name__, error, where)


def _guarded_handler(handler, method: str):
    """`handler` with a deserializer that never raises, and a behaviour that refuses a
    body it could not parse before the servicer sees it and logs the servicer's failure."""
    field = next(name for name in ("unary_unary", "unary_stream", "stream_unary",
                                   "stream_stream") if getattr(handler, name))
    behaviour = getattr(handler, field)
    streaming_in = field.startswith("stream")
    if not (inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)):
        # Every servicer method of the project is async; a plain function is the
        # generated base class's stub of a method this process does not implement.
        return _refusing_handler(handler, method, grpc.StatusCode.UNIMPLEMENTED,
                                 "a method this process does not implement",
                                 f"ray_core: {method} is not implemented by this process")
    parse = handler.request_deserializer

    def lenient(data):
        try:
            return parse(data) if parse is not None else data
        except Exception as e:  # DecodeError, or whatever else a corrupt body raises
            return _Malformed(e)

    async def checked(request, context):
        if type(request) is _Malformed:
            await _refuse_malformed(context, method, request)
        return request

    async def checked_stream(requests, context):
        async for request in requests:
            yield await checked(request, context)

    if inspect.isasyncgenfunction(behaviour):
        async def guarded(request, context):
            request = (checked_stream(request, context) if streaming_in
                       else await checked(request, context))
            replies = behaviour(request, context)
            try:
                async for reply in replies:
                    yield reply
            except _PASSED_ON:
                raise
            except Exception as e:
                _log_handler_failure(method, context, e)
                raise
            finally:
                await replies.aclose()    # its cleanup runs now, not when collected
    else:
        async def guarded(request, context):
            request = (checked_stream(request, context) if streaming_in
                       else await checked(request, context))
            try:
                return await behaviour(request, context)
            except _PASSED_ON:
                raise
            except Exception as e:
                _log_handler_failure(method, context, e)
                raise
    if _call_observer is not None:
        guarded = _observed(guarded, method, inspect.isasyncgenfunction(behaviour))
    return handler._replace(request_deserializer=lenient, **{field: guarded})


def observe_calls(observer: Callable[[str, Optional[float], bool], None]) -> None:
    """Have every method of this process's servers report its calls to `observer`."""
    global _call_observer
    _call_observer = observer


def _observed(guarded, method: str, streaming_out: bool):
    """`guarded` reporting each call to the observer (its duration when unary)."""
    observe = _call_observer
    if streaming_out:
        async def observed(request, context):
            failed = True
            try:
                async for reply in guarded(request, context):
                    yield reply
                failed = False
            finally:
                observe(method, None, failed)
    else:
        async def observed(request, context):
            start = time.perf_counter()
            failed = True
            try:
                reply = await guarded(request, context)
                failed = False
                return reply
            finally:
                observe(method, time.perf_counter() - start, failed)
    return observed


# ---- servers and channels ------------------------------------------------------

def _options():
    size = config.max_grpc_message_size
    return [("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
            # Without this two servers could share a port and a clash would go unseen.
            ("grpc.so_reuseport", 0)]


def _server_options():
    # A TCP client that never finishes the HTTP/2 handshake (silent, or one byte at a
    # time) is closed by grpc itself after this; its default is two minutes.
    return _options() + [("grpc.server_handshake_timeout_ms",
                          config.grpc_server_handshake_timeout_ms)]


async def start_server(servicers: Iterable[Tuple[Callable, Any]], port: int = 0,
                       host: str = "0.0.0.0",
                       token: Optional[str] = "") -> Tuple[grpc.aio.Server, int]:
    """Start a grpc.aio server with `(add_XServicer_to_server, servicer)` pairs.

    `token=""` (the default) means the process's cluster token; None disables auth.
    Returns the server and the bound port (port 0 picks a free one).
    """
    if token == "":
        token = auth_token()
    server = grpc.aio.server(interceptors=[_GuardInterceptor(token)], options=_server_options())
    for add, servicer in servicers:
        add(servicer, server)
    address = f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(f"ray_core could not listen on {address}: the port is in use or the "
                      f"address is not local; stop what holds it or choose another port")
    await server.start()
    return server, bound


def get_channel(address: str) -> grpc.aio.Channel:
    """The cached channel to `address` ("host:port"); call on the io loop."""
    channel = _channels.get(address)
    if channel is None:
        channel = grpc.aio.insecure_channel(address, options=_options())
        _channels[address] = channel
    return channel


class _Stub:
    """A generated stub whose every method carries the cluster token."""

    def __init__(self, stub, token: Optional[str]):
        metadata = ((TOKEN_METADATA_KEY, token),) if token else None
        for name, method in vars(stub).items():
            if callable(method):
                setattr(self, name, functools.partial(method, metadata=metadata))


def stub(stub_class, address: str, token: Optional[str] = "") -> Any:
    """A stub of `stub_class` on the cached channel to `address`; call on the io loop."""
    if token == "":
        token = auth_token()
    return _Stub(stub_class(get_channel(address)), token)


def num_channels() -> int:
    """Channels cached (a gauge: each holds gRPC core state, so they must not pile up)."""
    return len(_channels)


async def close_channels() -> None:
    channels = list(_channels.values())
    _channels.clear()
    for channel in channels:
        await channel.close()


def forget_channel(address: str) -> None:
    """Drop a cached channel (its peer died); the next call opens a new one."""
    channel = _channels.pop(address, None)
    if channel is not None:
        asyncio.ensure_future(channel.close())


# ---- calls ---------------------------------------------------------------------

async def call_with_retry(method: Callable, request: Any, *, timeout: Optional[float] = None,
                          attempts: Optional[int] = None, retry: bool = True) -> Any:
    """Call a unary stub method with a deadline; retry UNAVAILABLE with backoff if `retry`.

    Only idempotent calls should retry. The final failure is logged once and re-raised.
    """
    attempts = attempts or (config.rpc_retry_max_attempts if retry else 1)
    timeout = timeout if timeout is not None else config.rpc_default_deadline_s
    backoff = config.rpc_retry_initial_backoff_ms / 1000.0
    for attempt in range(1, attempts + 1):
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            if attempt == attempts or e.code() not in RETRYABLE_CODES:
                name = getattr(getattr(method, "func", method), "_method", b"?")
                logger.warning("RPC %s failed after %d attempt(s): %s %s",
                               name.decode() if isinstance(name, bytes) else name,
                               attempt, e.code().name, e.details())
                raise
            await asyncio.sleep(backoff * (1 + 0.2 * random.random()))
            backoff = min(backoff * 2, config.rpc_retry_max_backoff_ms / 1000.0)
    raise AssertionError("unreachable")

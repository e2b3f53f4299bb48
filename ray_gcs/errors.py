"""One mapping between gRPC statuses and the GCS's exceptions, on both sides of a call.

Server side: a table manager raises `RequestError(code, message)` for bad input; the
`handler` decorator turns it into the call's gRPC status, and turns any other exception
into INTERNAL with a message (a storage failure into UNAVAILABLE, which clients retry),
so that one bad request never takes the server down.
Client side: `from_rpc_error` maps the status back to a GcsError subclass that also
subclasses the closest builtin (LookupError for an unknown id, ValueError for bad input),
so callers can catch either.
"""
import functools
import logging

import grpc

from ray_gcs.storage import StorageError

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """Raised by a servicer for a request it refuses; becomes the call's status."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(message):
    return RequestError(grpc.StatusCode.NOT_FOUND, message)


def invalid(message):
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def already_exists(message):
    return RequestError(grpc.StatusCode.ALREADY_EXISTS, message)


def failed_precondition(message):
    return RequestError(grpc.StatusCode.FAILED_PRECONDITION, message)


def handler(method):
    """Wrap a unary servicer coroutine: RequestError -> its status, a crash -> INTERNAL."""

    @functools.wraps(method)
    async def wrapped(self, request, context):
        try:
            return await method(self, request, context)
        except RequestError as e:
            code, message = e.code, e.message
            logger.warning("%s refused: %s", method.__name__, message)
        except StorageError as e:
            # Redis may come back; UNAVAILABLE makes GcsClient retry for a while.
            code, message = grpc.StatusCode.UNAVAILABLE, f"GCS storage failed: {e}"
            logger.error("%s: %s", method.__name__, message)
        except Exception as e:  # noqa: BLE001 - the server must outlive any one request
            logger.exception("%s failed", method.__name__)
            code = grpc.StatusCode.INTERNAL
            message = f"GCS internal error in {method.__name__}: {type(e).__name__}: {e}"
        await context.abort(code, message)

    return wrapped


def check_id(value: bytes, id_class, what: str) -> bytes:
    """Refuse an id of the wrong size, naming the field and the size expected."""
    size = id_class.size()
    if len(value) != size:
        raise invalid(f"{what} must be {size} bytes ({id_class.__name__}), got {len(value)} "
                      f"bytes: {value.hex() or '(empty)'}")
    return value


# ---- client side ---------------------------------------------------------------

class GcsError(Exception):
    """A GCS call failed; `.code` is the gRPC status code."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNKNOWN):
        super().__init__(message)
        self.code = code


class GcsNotFoundError(GcsError, LookupError):
    """The GCS does not know the node, job, actor or other id named."""


class GcsInvalidArgumentError(GcsError, ValueError):
    """The request was malformed or over a limit."""


class GcsAlreadyExistsError(GcsError, ValueError):
    """A registration clashed with an existing entry."""


class GcsFailedPreconditionError(GcsError):
    """The request is not allowed in the entry's state (e.g. a dead node re-registering)."""


class GcsUnavailableError(GcsError, ConnectionError):
    """The GCS could not be reached within gcs_rpc_server_reconnect_timeout_s."""


_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: GcsNotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: GcsInvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: GcsAlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: GcsFailedPreconditionError,
    grpc.StatusCode.UNAVAILABLE: GcsUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: GcsUnavailableError,
}


def from_rpc_error(error: grpc.aio.AioRpcError, method: str, address: str) -> GcsError:
    cls = _BY_CODE.get(error.code(), GcsError)
    return cls(f"GCS {method} at {address} failed: {error.code().name}: {error.details()}",
               error.code())

"""Plasma errors, and the one mapping from wire status codes to them.

Each error subclasses PlasmaError and the closest builtin, so callers can catch either.
"""
from ray_plasma import protocol


class PlasmaError(Exception):
    """Base of every error the plasma store or client raises."""


class ObjectStoreFullError(PlasmaError, MemoryError):
    """A create did not fit even after evicting every unreferenced sealed object."""


class ObjectExistsError(PlasmaError, KeyError):
    """An object with this id was already created in this store."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class ObjectNotFoundError(PlasmaError, KeyError):
    """The object is not in the store (or this client holds no reference to it)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class PlasmaDisconnectedError(PlasmaError, ConnectionError):
    """The connection to the store is closed (the store died, or disconnect() ran)."""


class PlasmaProtocolError(PlasmaError, ValueError):
    """The store refused a request as malformed, or replied with something unexpected."""


_BY_STATUS = {
    protocol.STATUS_OBJECT_EXISTS: ObjectExistsError,
    protocol.STATUS_NOT_FOUND: ObjectNotFoundError,
    protocol.STATUS_STORE_FULL: ObjectStoreFullError,
    protocol.STATUS_INVALID: PlasmaProtocolError,
}


def error_for_status(status: int, message: str) -> PlasmaError:
    return _BY_STATUS.get(status, PlasmaError)(message)


def status_for_error(error: PlasmaError) -> int:
    for status, kind in _BY_STATUS.items():
        if type(error) is kind:
            return status
    return protocol.STATUS_ERROR

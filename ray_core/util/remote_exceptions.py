"""The user's own exception from a failed task, as the standard library's pools give it.

ray_core raises a failed task's error as RayTaskError(Cause): an instance of both
RayTaskError and the user's class, so `except ValueError` works. Code written for
multiprocessing, joblib or Dask may also test `type(e) is ValueError`, or read what the
exception's own class keeps, so the doors (Pool, the joblib backend, the Dask scheduler)
raise the cause itself, with the remote traceback chained as multiprocessing.Pool
chains it: a multiprocessing.pool.RemoteTraceback as __cause__.
"""
from multiprocessing.pool import RemoteTraceback

from ray_core.exceptions import RayTaskError


def original_exception(error: BaseException) -> BaseException:
    """The exception the user's function raised, if `error` is a task's failure that
    carries it (a cause that could not be pickled leaves the RayTaskError as it is)."""
    while isinstance(error, RayTaskError) and error.cause is not None:
        cause = error.cause
        cause.__cause__ = RemoteTraceback(error.traceback_str)
        error = cause
    return error

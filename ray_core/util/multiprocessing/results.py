"""What Pool's calls return: AsyncResult (apply_async), MapResult (map_async,
starmap_async), IMapIterator and IMapUnorderedIterator (imap, imap_unordered).

Each is a job of chunks. The dispatcher thread fills it (chunk_done, chunk_failed,
chunks_end when its iterable is spent, abort when the pool is terminated) and asks
`wanted()` before it sends another of its chunks; the caller's thread reads it. They
behave as the standard library's classes of the same names: get(timeout) and
next(timeout) raise multiprocessing.TimeoutError, a map fails on its first failed
chunk (and sends no more of its chunks), an imap iterator raises a failed chunk's error
at that chunk's place and goes on after it. Callbacks run on the dispatcher thread
before get() returns, as multiprocessing runs them on its result handler thread: they
should return quickly. A job keeps its pool alive, so a pool nobody else holds is not
terminated under a running iterator.
"""
import collections
import multiprocessing
import sys
import threading
import time
import traceback
from typing import Any, Callable, Optional


class _Job:
    def __init__(self, pool, func: Callable, star: bool, progress):
        self._pool = pool
        self.func = func
        self.star = star
        self._progress = progress       # a progress bar (update/close) or None

    def wanted(self) -> bool:
        """Whether more of this job's chunks are worth running."""
        return True

    def chunks_end(self, count: int, error: Optional[BaseException] = None) -> None:
        """The job's iterable gave `count` chunks, then ended (or raised `error`)."""

    def _advance(self, items: int) -> None:
        if self._progress is not None:
            self._progress.update(items)

    def _end_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None


def _call_back(callback: Optional[Callable], value: Any) -> None:
    """Run a user callback; its failure is printed, never lost in (or kills) the
    dispatcher thread."""
    if callback is None:
        return
    try:
        callback(value)
    except Exception:
        print("ray_core Pool: a callback raised:", file=sys.stderr)
        traceback.print_exc()


class AsyncResult(_Job):
    """The result of apply_async: one call."""

    def __init__(self, pool, func: Callable, star: bool, progress=None,
                 callback: Optional[Callable] = None,
                 error_callback: Optional[Callable] = None):
        super().__init__(pool, func, star, progress)
        self._callback = callback
        self._error_callback = error_callback
        self._event = threading.Event()
        self._success: Optional[bool] = None
        self._value: Any = None

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: Optional[float] = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise multiprocessing.TimeoutError(f"the result was not ready within {timeout}s")
        if self._success:
            return self._value
        raise self._value

    def wanted(self) -> bool:
        return not self.ready()

    def chunk_done(self, index: int, values: list) -> None:
        self._advance(len(values))
        self._set(True, values[0])

    def chunk_failed(self, index: int, error: BaseException) -> None:
        self._set(False, error)

    def abort(self, error: BaseException) -> None:
        if not self.ready():
            self._set(False, error)

    def _set(self, success: bool, value: Any) -> None:
        self._success, self._value = success, value
        self._end_progress()
        _call_back(self._callback if success else self._error_callback, value)
        self._event.set()
        self._pool = None


class MapResult(AsyncResult):
    """The result of map_async/starmap_async: `length` items in chunks of `chunksize`."""

    def __init__(self, pool, func: Callable, star: bool, length: int, chunksize: int,
                 progress=None, callback=None, error_callback=None):
        super().__init__(pool, func, star, progress, callback, error_callback)
        self._chunksize = chunksize
        self._items = [None] * length
        self._chunks_expected = -(-length // chunksize) if length else 0
        self._chunks_left = self._chunks_expected
        if not length:
            self._set(True, self._items)

    def chunk_done(self, index: int, values: list) -> None:
        if self.ready():
            return
        start = index * self._chunksize
        self._items[start:start + len(values)] = values
        self._advance(len(values))
        self._chunks_left -= 1
        if not self._chunks_left:
            self._set(True, self._items)

    def chunk_failed(self, index: int, error: BaseException) -> None:
        if not self.ready():
            self._set(False, error)

    def chunks_end(self, count: int, error: Optional[BaseException] = None) -> None:
        """The iterable raised (its own error fails the map, as in multiprocessing), or
        gave fewer chunks than its len() promised (the map could never complete)."""
        if self.ready():
            return
        if error is None and count < self._chunks_expected:
            error = ValueError(f"the iterable gave {count} chunks of {self._chunksize} "
                               f"items, fewer than its len() of {len(self._items)} needs")
        if error is not None:
            self._set(False, error)


class IMapIterator(_Job):
    """The iterator of imap: items in the order of the iterable, each chunk's as it
    arrives; a failed chunk raises its error once, at its place."""

    def __init__(self, pool, func: Callable, star: bool, progress=None):
        super().__init__(pool, func, star, progress)
        self._cond = threading.Condition()
        self._outcomes = {}             # chunk index -> (success, values or error)
        self._chunks_total: Optional[int] = None
        self._chunks_received = 0
        self._aborted: Optional[BaseException] = None
        self._next_chunk = 0
        self._current = collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                item = self._take()
                if item is not _NOTHING:
                    return item
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise multiprocessing.TimeoutError(
                        f"no next result within {timeout}s")
                self._cond.wait(left)

    def _take(self) -> Any:
        """The next item, raising the next error, or _NOTHING if it has not come."""
        if self._current:
            return self._current.popleft()
        outcome = self._outcomes.pop(self._next_chunk, None)
        if outcome is not None:
            self._next_chunk += 1
            success, value = outcome
            if not success:
                raise value
            self._current.extend(value)
            return self._take()
        if self._next_chunk == self._chunks_total:
            raise StopIteration
        if self._aborted is not None:
            raise self._aborted
        return _NOTHING

    def _record(self, index: int, outcome: tuple) -> None:
        with self._cond:
            self._outcomes[index] = outcome
            self._chunks_received += 1
            self._check_end()
            self._cond.notify_all()

    def chunk_done(self, index: int, values: list) -> None:
        self._advance(len(values))
        self._record(index, (True, values))

    def chunk_failed(self, index: int, error: BaseException) -> None:
        self._record(index, (False, error))

    def chunks_end(self, count: int, error: Optional[BaseException] = None) -> None:
        with self._cond:
            if error is not None:       # the iterable raised: its error takes the next place
                self._outcomes[count] = (False, error)
                count += 1
                self._chunks_received += 1
            self._chunks_total = count
            self._check_end()
            self._cond.notify_all()

    def abort(self, error: BaseException) -> None:
        with self._cond:
            self._aborted = error
            self._end_progress()
            self._cond.notify_all()

    def _check_end(self) -> None:
        if self._chunks_received == self._chunks_total:
            self._end_progress()
            self._pool = None


class IMapUnorderedIterator(IMapIterator):
    """The iterator of imap_unordered: items as their chunks arrive."""

    def _record(self, index: int, outcome: tuple) -> None:
        with self._cond:
            success, value = outcome
            if success:
                self._current.extend((True, v) for v in value)
            else:
                self._current.append((False, value))
            self._chunks_received += 1
            self._check_end()
            self._cond.notify_all()

    def chunks_end(self, count: int, error: Optional[BaseException] = None) -> None:
        if error is not None:
            self._record(count, (False, error))
            count += 1
        with self._cond:
            self._chunks_total = count
            self._check_end()
            self._cond.notify_all()

    def _take(self) -> Any:
        if self._current:
            success, value = self._current.popleft()
            if not success:
                raise value
            return value
        if self._chunks_received == self._chunks_total:
            raise StopIteration
        if self._aborted is not None:
            raise self._aborted
        return _NOTHING


_NOTHING = object()

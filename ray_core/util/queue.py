"""ray_core.util.queue.Queue: a FIFO queue shared by tasks and actors (ray.util.queue's).

The items live in an async actor, so any process holding the Queue (it pickles as a
handle to that actor) can put and get; a blocked put or get waits inside the actor,
costing no thread, and `timeout` bounds the wait there.
"""
import asyncio
import queue
from typing import Any, Dict, Iterable, List, Optional


class Empty(queue.Empty):
    """get() found nothing within its timeout (or at once, when not blocking)."""


class Full(queue.Full):
    """put() found no room within its timeout (or at once, when not blocking)."""


def _check_timeout(timeout: Optional[float]) -> None:
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"'timeout' must be a non-negative number or None, got {timeout!r}")


class Queue:
    """A queue of up to `maxsize` items (0: unbounded); `actor_options` go to the actor
    that holds them (e.g. a name, or lifetime="detached")."""

    def __init__(self, maxsize: int = 0, actor_options: Optional[Dict] = None) -> None:
        import ray_core
        if not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be a non-negative int, got {maxsize!r}")
        self.maxsize = maxsize
        holder = ray_core.remote(_QueueActor)
        self.actor = holder.options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return self._call("qsize")

    def qsize(self) -> int:
        return self._call("qsize")

    def empty(self) -> bool:
        return self._call("empty")

    def full(self) -> bool:
        return self._call("full")

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if not block:
            return self._call("put_nowait", item)
        _check_timeout(timeout)
        self._call("put", item, timeout)

    async def put_async(self, item: Any, block: bool = True,
                        timeout: Optional[float] = None) -> None:
        if not block:
            return await self.actor.put_nowait.remote(item)
        _check_timeout(timeout)
        await self.actor.put.remote(item, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        if not block:
            return self._call("get_nowait")
        _check_timeout(timeout)
        return self._call("get", timeout)

    async def get_async(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        if not block:
            return await self.actor.get_nowait.remote()
        _check_timeout(timeout)
        return await self.actor.get.remote(timeout)

    def put_nowait(self, item: Any) -> None:
        self._call("put_nowait", item)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Put all of `items` or, if they do not all fit now, none (Full)."""
        if not isinstance(items, Iterable):
            raise TypeError(f"'items' must be an iterable, got {type(items).__name__}")
        self._call("put_nowait_batch", list(items))

    def get_nowait(self) -> Any:
        return self._call("get_nowait")

    def get_nowait_batch(self, num_items: int) -> List[Any]:
        """`num_items` items at once or, if fewer are there, none (Empty)."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError(f"'num_items' must be an int, got {type(num_items).__name__}")
        if num_items < 0:
            raise ValueError(f"'num_items' must be non-negative, got {num_items}")
        return self._call("get_nowait_batch", num_items)

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the actor holding the items (they are lost); the queue is unusable after.
        Unless `force`, the calls already sent are served first (those not blocked in a
        wait), for up to grace_period_s."""
        import ray_core
        if self.actor is None:
            return
        if not force:
            ray_core.wait([self.actor.qsize.remote()], timeout=grace_period_s)
        ray_core.kill(self.actor, no_restart=True)
        self.actor = None

    def _call(self, method: str, *args):
        import ray_core
        if self.actor is None:
            raise RuntimeError("this queue was shut down")
        return ray_core.get(getattr(self.actor, method).remote(*args))


class _QueueActor:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self.queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item, timeout=None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full(f"no room in the queue (maxsize {self.maxsize}) within {timeout}s") \
                from None

    async def get(self, timeout=None):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty(f"nothing in the queue within {timeout}s") from None

    def put_nowait(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full(f"the queue is full (maxsize {self.maxsize})") from None

    def put_nowait_batch(self, items) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(f"{len(items)} items do not fit: the queue holds {self.qsize()} of "
                       f"at most {self.maxsize}")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self):
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    def get_nowait_batch(self, num_items: int):
        if num_items > self.qsize():
            raise Empty(f"{num_items} items asked for, the queue holds {self.qsize()}")
        return [self.queue.get_nowait() for _ in range(num_items)]

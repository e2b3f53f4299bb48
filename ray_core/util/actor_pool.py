"""ActorPool: spread work over a fixed set of actors, as ray.util.ActorPool does.

`fn(actor, value)` must return the ObjectRef of a call on `actor`. Each actor runs one
submitted call at a time; values wait here while every actor is busy. map() yields
results in submission order, map_unordered() as they finish.
"""
from typing import Any, Callable, Dict, Iterable, List


class ActorPool:
    def __init__(self, actors: list):
        if not actors:
            raise ValueError("ActorPool needs at least one actor")
        self._idle = list(actors)
        self._future_to_actor: Dict[Any, tuple] = {}   # ref -> (index, actor)
        self._index_to_future: Dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending: List[tuple] = []

    def submit(self, fn: Callable, value) -> None:
        """Run fn(actor, value) on an idle actor, or queue it until one is free."""
        if self._idle:
            actor = self._idle.pop()
            ref = fn(actor, value)
            self._future_to_actor[ref] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = ref
            self._next_task_index += 1
        else:
            self._pending.append((fn, value))

    def has_next(self) -> bool:
        return bool(self._future_to_actor)

    def has_free(self) -> bool:
        return bool(self._idle) and not self._pending

    def _return_actor(self, actor) -> None:
        self._idle.append(actor)
        if self._pending:
            self.submit(*self._pending.pop(0))

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The next result in submission order."""
        from ray_core import get, wait
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        ref = self._index_to_future[self._next_return_index]
        if timeout is not None:
            ready, _ = wait([ref], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    return None
                raise TimeoutError("Timed out waiting for result")
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(ref)
        self._return_actor(actor)
        return get(ref)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """Whichever pending result finishes first."""
        from ray_core import get, wait
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for result")
        ref = ready[0]
        index, actor = self._future_to_actor.pop(ref)
        self._index_to_future.pop(index, None)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(actor)
        return get(ref)

    def _start_map(self, fn: Callable, values: Iterable) -> None:
        while self.has_next():      # results of earlier submits are dropped, as in Ray
            self.get_next_unordered()
        for value in values:
            self.submit(fn, value)

    def map(self, fn: Callable, values: Iterable):
        """Results of fn over values, in the order of values."""
        self._start_map(fn, values)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable, values: Iterable):
        """Results of fn over values, as they finish."""
        self._start_map(fn, values)
        while self.has_next():
            yield self.get_next_unordered()

    def push(self, actor) -> None:
        """Add an idle actor to the pool."""
        self._return_actor(actor)

    def pop_idle(self):
        return self._idle.pop() if self.has_free() else None

"""PoolActor: one process of a Pool, an actor that runs chunks of calls.

The initializer runs once, in the constructor, as multiprocessing runs it once in each
worker process (again in a replacement actor). A chunk is run whole and answered as one
list: one actor call per chunk, not per item; the first exception fails the chunk, as a
chunk fails in multiprocessing.
"""
import ray_core


@ray_core.remote
class PoolActor:
    def __init__(self, initializer, initargs: tuple):
        if initializer is not None:
            initializer(*initargs)

    def ready(self) -> bool:
        """Answered once the constructor has run: the dispatcher's sign to send chunks."""
        return True

    def run_chunk(self, func, items: list, star: bool) -> list:
        if star:
            return [func(*args) for args in items]
        return [func(item) for item in items]

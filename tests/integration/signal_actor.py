"""SignalActor: tasks wait on it until the test says go, so a test can hold work
running (or not yet done) without sleeping for a guessed time."""
import asyncio

import ray_core as ray


@ray.remote(num_cpus=0)
class SignalActor:
    def __init__(self):
        self._event = asyncio.Event()
        self._waiters = []

    async def wait(self, who=None):
        """Return once send() is called; `who` (a pid, say) is listed by waiters()."""
        self._waiters.append(who)
        await self._event.wait()

    async def send(self):
        self._event.set()

    async def waiters(self) -> list:
        """Who is waiting (or has waited): a test knows its work is running."""
        return list(self._waiters)

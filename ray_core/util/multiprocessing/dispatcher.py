"""ChunkDispatcher: the one thread that sends a Pool's chunks to its actors.

Jobs queue here in submission order; their chunks are drawn from each job's iterable
only when an actor has room (at most pool_chunks_in_flight_per_actor chunks each, the
least loaded first), so imap over an endless generator runs with bounded memory, as
the standard library's pool does, and long chunks stay balanced across actors. Replies
come back as ObjectRef futures whose done-callbacks only queue an event; every
`.remote()` call, every job update and every user callback happens on this thread.

An actor is replaced by a fresh one (the initializer runs again) once it has taken
maxtasksperchild chunks and answered them all, or once it died (its in-flight chunks
fail with the actor's error: unlike the standard library's pool, a worker killed under a
task never leaves map() waiting for ever). An actor ends when the dispatcher drops its
handle (ray_core ends an actor whose owner's handles are gone, after the calls already
sent): a replaced one at once, all of them when close() has let the queued work finish.
terminate() kills them and fails what was not done.
"""
import collections
import queue
import threading
from typing import Callable, Iterator, Optional

import ray_core
from ray_common.config import config
from ray_core.exceptions import RayActorError
from ray_core.util.remote_exceptions import original_exception


class _Slot:
    """One of the pool's processes: its actor and the chunks it has in flight."""

    def __init__(self, index: int, actor):
        self.index = index              # the pool's process number: where its actor goes
        self.actor = actor
        self.started = None             # the ref of its ready() call
        self.ready = False              # its constructor has ended (either way)
        self.in_flight = set()          # (job, chunk index)
        self.sent = 0                   # chunks sent to this actor, for maxtasksperchild
        self.retiring = False           # takes no more chunks; replaced once idle

    def end(self) -> None:
        """Drop the actor's handle: ray_core ends an actor whose owner holds no handle,
        after the calls already sent. Events still on their way hold this slot, not the
        handle, so nothing keeps the actor alive."""
        self.actor = None

    def kill(self) -> None:
        """End the actor now. kill() is for a ready actor only: one made a moment ago
        may not be registered with the GCS yet, and the GCS would answer that it knows
        no such actor; dropping the handle ends that one after the only call it was sent
        (ready()). kill() also fails when the driver shuts down under this thread, and
        then the actors end with the job anyway."""
        if self.ready and ray_core.is_initialized():
            try:
                ray_core.kill(self.actor)
            except Exception:
                pass
        self.end()


class _Source:
    """A queued job and the chunks not yet drawn from it."""

    def __init__(self, job, chunks: Iterator[list]):
        self.job = job
        self.chunks = chunks
        self.drawn = 0


_SUBMIT, _READY, _DONE, _CLOSE, _TERMINATE = range(5)


class ChunkDispatcher:
    def __init__(self, make_actor: Callable, processes: int,
                 maxtasksperchild: Optional[int]):
        self._make_actor = make_actor
        self._max_tasks = maxtasksperchild
        self._window = config.pool_chunks_in_flight_per_actor
        self._sources = collections.deque()
        self._events = queue.SimpleQueue()
        self._slots = [self._new_slot(index) for index in range(processes)]
        try:    # as multiprocessing.Pool() returns with its processes started
            ray_core.get([slot.started for slot in self._slots])
        except BaseException:       # an initializer failed, or the caller gave up
            for slot in self._slots:
                slot.kill()
            raise
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="ray_core-pool-dispatcher",
                                        daemon=True)
        self._thread.start()

    # ---- called from the caller's thread ------------------------------------------------
    def submit(self, job, chunks: Iterator[list]) -> None:
        """Run `job`'s chunks (lists of items) in order of arrival."""
        self._events.put((_SUBMIT, _Source(job, chunks)))

    def close(self) -> None:
        self._events.put((_CLOSE,))

    def terminate(self, error: BaseException) -> None:
        self._events.put((_TERMINATE, error))

    def join(self, timeout: Optional[float] = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- the dispatcher thread ------------------------------------------------------------
    def _run(self) -> None:
        while True:
            if not self._handle_events():
                return
            self._dispatch()
            if self._closing and not self._sources and \
                    not any(slot.in_flight for slot in self._slots):
                for slot in self._slots:
                    slot.end()
                return

    def _handle_events(self) -> bool:
        """Wait for an event, then handle every one that has arrived; False after
        terminate. A function of its own so that no event (holding a job and its
        results) stays referenced while the thread waits for the next one."""
        event = self._events.get()
        while True:
            if event[0] == _TERMINATE:
                self._terminate(event[1])
                return False
            self._handle(event)
            if self._events.empty():
                return True
            event = self._events.get()

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == _SUBMIT:
            self._sources.append(event[1])
        elif kind == _READY:
            event[1].ready = True
        elif kind == _DONE:
            self._chunk_finished(*event[1:])
        elif kind == _CLOSE:
            self._closing = True

    def _dispatch(self) -> None:
        while True:
            ready = [s for s in self._slots
                     if s.ready and not s.retiring and len(s.in_flight) < self._window]
            if not ready:
                return
            drawn = self._draw()
            if drawn is None:
                return
            slot = min(ready, key=lambda s: len(s.in_flight))
            self._send(slot, *drawn)

    def _draw(self):
        """(job, chunk index, items) of the next chunk worth running, or None."""
        while self._sources:
            source = self._sources[0]
            if not source.job.wanted():
                self._sources.popleft()
                continue
            try:
                items = next(source.chunks)
            except StopIteration:
                self._sources.popleft()
                source.job.chunks_end(source.drawn)
                continue
            except Exception as e:          # the caller's iterable raised
                self._sources.popleft()
                source.job.chunks_end(source.drawn, e)
                continue
            source.drawn += 1
            return source.job, source.drawn - 1, items
        return None

    def _send(self, slot: _Slot, job, index: int, items: list) -> None:
        try:
            ref = slot.actor.run_chunk.remote(job.func, items, job.star)
        except Exception as e:      # the function or an item does not pickle
            job.chunk_failed(index, _pickling_error(e))
            return
        slot.in_flight.add((job, index))
        slot.sent += 1
        if self._max_tasks is not None and slot.sent >= self._max_tasks:
            slot.retiring = True
        ref.future().add_done_callback(
            lambda future: self._events.put((_DONE, slot, job, index, future)))

    def _chunk_finished(self, slot: _Slot, job, index: int, future) -> None:
        slot.in_flight.discard((job, index))
        try:
            values = future.result()
        except RayActorError as e:
            slot.retiring = True
            job.chunk_failed(index, e)
        except Exception as e:
            job.chunk_failed(index, original_exception(e))
        else:
            job.chunk_done(index, values)
        if slot.retiring and not slot.in_flight and (self._sources or not self._closing):
            slot.end()
            self._slots[self._slots.index(slot)] = self._new_slot(slot.index)

    def _new_slot(self, index: int) -> _Slot:
        """A slot with a new actor, that takes chunks once the actor has answered (or
        failed) its first call: so no chunk waits on an actor the GCS may not know yet,
        which kill() could not stop (see _Slot.kill). An actor whose constructor failed
        still takes chunks: they fail with its error, as the caller should see."""
        slot = _Slot(index, self._make_actor(index))
        slot.started = slot.actor.ready.remote()
        slot.started.future().add_done_callback(lambda _: self._events.put((_READY, slot)))
        return slot

    def _terminate(self, error: BaseException) -> None:
        jobs = {source.job for source in self._sources}
        for slot in self._slots:
            jobs.update(job for job, _ in slot.in_flight)
        self._sources.clear()
        for slot in self._slots:
            slot.kill()
        for job in jobs:
            job.abort(error)


def _pickling_error(error: Exception) -> BaseException:
    """What a chunk that could not be sent fails with: the pickling error itself, as
    multiprocessing raises it, with ray_core's description of the culprit as a note."""
    cause = error.__cause__
    if cause is None:
        return error
    if hasattr(cause, "add_note"):      # Python 3.11+
        cause.add_note(str(error))
    return cause

"""Pool: the standard library's multiprocessing.Pool, with actors spread over the cluster
as its processes (ray.util.multiprocessing.Pool's interface).

Each process is a PoolActor (num_cpus=1 unless ray_remote_args says otherwise), dealt
to the alive nodes in turn, as many as each node's CPUs hold, with a soft node affinity:
a pool uses every node, deterministically (the SPREAD strategy guesses from a raylet's
resource view, which may not list a node that just joined yet), and a replacement
actor goes where the one it replaces was. A scheduling_strategy in ray_remote_args
(a placement group, say) takes over from that. Work goes out in chunks, sized as
multiprocessing sizes them (map: len / (4 * processes), imap: chunksize), through one
ChunkDispatcher thread; results and errors come back through ObjectRef futures. What a
caller of multiprocessing.Pool relies on holds: results in order, the function's own
exception (its remote traceback chained as multiprocessing.pool.RemoteTraceback),
callbacks run before get() returns, "Pool not running" after close(), and the context
manager terminates. Beyond it: a process that dies fails its chunks with the actor's
error instead of hanging the map, and map/imap take progress=True (ray_core.util.progress).
`context` is accepted and ignored: the processes are actors, not forked children.
"""
import functools
import itertools
import weakref
from typing import Any, Callable, Iterable, List, Optional

import ray_core
from ray_core.util.multiprocessing.dispatcher import ChunkDispatcher
from ray_core.util.multiprocessing.pool_actor import PoolActor
from ray_core.util.multiprocessing.results import (AsyncResult, IMapIterator,
                                                   IMapUnorderedIterator, MapResult)
from ray_core.util.progress import progress_bar
from ray_core.util.scheduling_strategies import NodeAffinitySchedulingStrategy

_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


class Pool:
    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable] = None,
                 initargs: Iterable = (), maxtasksperchild: Optional[int] = None,
                 context: Any = None, ray_address: Optional[str] = None,
                 ray_remote_args: Optional[dict] = None):
        if processes is not None and (not _is_int(processes) or processes < 1):
            raise ValueError(f"Number of processes must be at least 1, got {processes!r}")
        if maxtasksperchild is not None and (not _is_int(maxtasksperchild)
                                             or maxtasksperchild < 1):
            raise ValueError(f"maxtasksperchild must be a positive int or None, "
                             f"got {maxtasksperchild!r}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be a callable, got {initializer!r}")
        if ray_remote_args is not None and not isinstance(ray_remote_args, dict):
            raise TypeError(f"ray_remote_args must be a dict of actor options, "
                            f"got {ray_remote_args!r}")
        if not ray_core.is_initialized():
            ray_core.init(address=ray_address)
        options = {"num_cpus": 1, **(ray_remote_args or {})}
        self._processes = _processes_that_fit(processes, options["num_cpus"])
        if "scheduling_strategy" in options:
            classes = [PoolActor.options(**options)] * self._processes
        else:
            classes = [PoolActor.options(**options, scheduling_strategy=(
                NodeAffinitySchedulingStrategy(node, soft=True)))
                for node in _deal_to_nodes(self._processes, options["num_cpus"])]
        initargs = tuple(initargs)
        self._state = _RUN
        self._dispatcher = ChunkDispatcher(
            lambda index: classes[index].remote(initializer, initargs), self._processes,
            maxtasksperchild)
        # An unreferenced pool gives its CPUs back, as an unclosed multiprocessing pool
        # ends its processes when collected.
        self._finalizer = weakref.finalize(self, self._dispatcher.terminate,
                                           _terminated_error())

    def __repr__(self) -> str:
        return f"<ray_core.util.multiprocessing.Pool state={self._state} " \
               f"processes={self._processes}>"

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or "
                                  "pickled: pass the function and data to its methods")

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, *exc_info) -> None:
        self.terminate()

    # ---- one call ---------------------------------------------------------------------------
    def apply(self, func: Callable, args: Iterable = (), kwds: Optional[dict] = None) -> Any:
        """func(*args, **kwds) on one of the pool's processes."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: Iterable = (), kwds: Optional[dict] = None,
                    callback: Optional[Callable] = None,
                    error_callback: Optional[Callable] = None) -> AsyncResult:
        self._check_running()
        _check_callable(func, "apply_async")
        if kwds:
            func = functools.partial(func, **kwds)
        result = AsyncResult(self, func, True, callback=callback, error_callback=error_callback)
        self._dispatcher.submit(result, iter([[tuple(args)]]))
        return result

    # ---- maps -------------------------------------------------------------------------------
    def map(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
            progress=False) -> list:
        """[func(x) for x in iterable], in chunks over the pool's processes."""
        return self._map_async("map", func, iterable, chunksize, False, progress).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                  callback: Optional[Callable] = None,
                  error_callback: Optional[Callable] = None, progress=False) -> MapResult:
        return self._map_async("map_async", func, iterable, chunksize, False, progress,
                               callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                progress=False) -> list:
        """[func(*args) for args in iterable]."""
        return self._map_async("starmap", func, iterable, chunksize, True, progress).get()

    def starmap_async(self, func: Callable, iterable: Iterable,
                      chunksize: Optional[int] = None, callback: Optional[Callable] = None,
                      error_callback: Optional[Callable] = None,
                      progress=False) -> MapResult:
        return self._map_async("starmap_async", func, iterable, chunksize, True, progress,
                               callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1,
             progress=False) -> IMapIterator:
        """func(x) for x in iterable, lazily, in order; the iterable is drawn from as the
        processes have room."""
        return self._imap(IMapIterator, "imap", func, iterable, chunksize, progress)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1,
                       progress=False) -> IMapUnorderedIterator:
        """As imap, in the order the results arrive."""
        return self._imap(IMapUnorderedIterator, "imap_unordered", func, iterable,
                          chunksize, progress)

    def _map_async(self, method: str, func: Callable, iterable: Iterable,
                   chunksize: Optional[int], star: bool, progress, callback=None,
                   error_callback=None) -> MapResult:
        self._check_running()
        _check_callable(func, method)
        _check_chunksize(chunksize, method, allow_none=True)
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        if chunksize is None:       # multiprocessing's choice: about 4 chunks a process
            chunksize = max(1, -(-len(items) // (self._processes * 4)))
        bar = _progress(progress, method, func, len(items))
        result = MapResult(self, func, star, len(items), chunksize, bar, callback,
                           error_callback)
        if len(items):
            self._dispatcher.submit(result, _chunks(items, chunksize))
        return result

    def _imap(self, result_class, method: str, func: Callable, iterable: Iterable,
              chunksize: int, progress) -> IMapIterator:
        self._check_running()
        _check_callable(func, method)
        _check_chunksize(chunksize, method, allow_none=False)
        total = len(iterable) if hasattr(iterable, "__len__") else None
        result = result_class(self, func, False, _progress(progress, method, func, total))
        self._dispatcher.submit(result, _chunks(iter(iterable), chunksize))
        return result

    # ---- the end ----------------------------------------------------------------------------
    def close(self) -> None:
        """Take no more work; what was submitted still runs, then the processes end."""
        if self._state == _RUN:
            self._state = _CLOSE
            self._dispatcher.close()

    def terminate(self) -> None:
        """End the processes now; results not ready fail with a RuntimeError."""
        self._state = _TERMINATE
        self._finalizer()

    def join(self, timeout: Optional[float] = None) -> None:
        """Wait for the processes to end, after close() or terminate()."""
        if self._state == _RUN:
            raise ValueError("Pool is still running: call close() or terminate() before "
                             "join()")
        if not self._dispatcher.join(timeout):
            raise TimeoutError(f"the pool's work did not finish within {timeout}s")

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")


def _processes_that_fit(processes: Optional[int], cpus_each: float) -> int:
    """How many actors the pool starts: `processes`, or as many as the cluster's CPUs
    hold; more than the cluster holds would wait for ever, so that is an error."""
    total = ray_core.cluster_resources().get("CPU", 0)
    if processes is None:
        return max(1, int(total // cpus_each)) if cpus_each else max(1, int(total))
    if processes * cpus_each > total:
        raise ValueError(
            f"Pool(processes={processes}) needs {processes * cpus_each:g} CPUs "
            f"({cpus_each:g} per process), but the cluster has {total:g}: ask for fewer "
            f"processes, or fewer CPUs each with ray_remote_args={{'num_cpus': ...}}")
    return processes


def _deal_to_nodes(processes: int, cpus_each: float) -> List[str]:
    """A node id for each process: the alive nodes in turn, each taking as many as its
    CPUs hold (any number without CPUs asked for); what fits nowhere goes to the nodes
    in turn regardless, and waits there for CPUs."""
    room = {n["NodeID"]: n["Resources"].get("CPU", 0.0) for n in ray_core.nodes()
            if n["Alive"]}
    nodes = sorted(room)
    placed: List[str] = []
    turn = 0
    while len(placed) < processes:
        fits = [n for n in nodes if room[n] >= cpus_each] or nodes
        node = fits[turn % len(fits)]
        room[node] -= cpus_each
        placed.append(node)
        turn += 1
    return placed


def _chunks(items: Iterable, size: int):
    """Lists of `size` items (the last may be shorter); a failing iterable raises here,
    and the items drawn for the chunk it broke are lost, as in multiprocessing."""
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def _progress(progress, method: str, func: Callable, total: Optional[int]):
    """A progress bar for progress=True (or a label string), else None."""
    if not progress:
        return None
    name = getattr(func, "__name__", type(func).__name__)
    label = progress if isinstance(progress, str) else f"Pool.{method}({name})"
    return progress_bar(total, label)


def _check_callable(func: Any, method: str) -> None:
    if not callable(func):
        raise TypeError(f"Pool.{method}: the function must be callable, got {func!r}")


def _check_chunksize(chunksize: Any, method: str, allow_none: bool) -> None:
    if chunksize is None and allow_none:
        return
    if not _is_int(chunksize) or chunksize < 1:
        raise ValueError(f"Pool.{method}: chunksize must be an int of 1 or more, "
                         f"got {chunksize!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _terminated_error() -> RuntimeError:
    return RuntimeError("the Pool was terminated before this result was ready")

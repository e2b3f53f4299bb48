"""Iterating over results as they finish: as_completed and map_unordered (ray.util's).

Both wait in chunks, so a long result list costs one wait() per chunk rather than one
get() per ref, and map_unordered keeps at most `backpressure_size` tasks in flight so
an endless item stream does not queue endless tasks.
"""
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple


def _next_chunk(refs: List, chunk_size: int, yield_obj_refs: bool,
                wait_kwargs) -> Tuple[List, List]:
    """(values or refs of up to chunk_size ready refs, the refs still pending)."""
    import ray_core
    ready, pending = ray_core.wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    if not ready and wait_kwargs.get("timeout") is not None:
        raise ray_core.exceptions.GetTimeoutError(
            f"none of {len(refs)} pending refs finished within {wait_kwargs['timeout']}s")
    return (ready if yield_obj_refs else ray_core.get(ready)), pending


def _check(chunk_size: int, wait_kwargs) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if "num_returns" in wait_kwargs:
        raise ValueError("pass chunk_size, not num_returns: it is the num_returns of each "
                         "wait()")


def as_completed(refs: Sequence, *, chunk_size: int = 10, yield_obj_refs: bool = False,
                 **wait_kwargs) -> Iterator[Any]:
    """Yield the values of `refs` (or the refs, with yield_obj_refs) in chunks as they
    finish; `wait_kwargs` (timeout, fetch_local) go to each wait()."""
    _check(chunk_size, wait_kwargs)
    pending = list(refs)
    while pending:
        done, pending = _next_chunk(pending, chunk_size, yield_obj_refs, wait_kwargs)
        yield from done


def map_unordered(fn, items: Iterable[Any], *, backpressure_size: Optional[int] = 100,
                  chunk_size: int = 10, yield_obj_refs: bool = False,
                  **wait_kwargs) -> Iterator[Any]:
    """`fn.remote(item)` for each item, yielding results as they finish, with at most
    `backpressure_size` tasks in flight (None: no limit)."""
    _check(chunk_size, wait_kwargs)
    if backpressure_size is not None and backpressure_size <= 0:
        raise ValueError(f"backpressure_size must be positive or None, got {backpressure_size}")
    pending: List = []
    for item in items:
        pending.append(fn.remote(item))
        if backpressure_size is not None and len(pending) >= backpressure_size:
            done, pending = _next_chunk(pending, chunk_size, yield_obj_refs, wait_kwargs)
            yield from done
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **wait_kwargs)

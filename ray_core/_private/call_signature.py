"""A remote call's arguments checked against the callee's signature at .remote(), as Ray
does: a call that could never bind (too many arguments, a missing or unknown keyword)
raises TypeError where it is made, not later inside a worker.

A signature travels with actor handles (to any process), so it is kept as plain
(name, kind, has_default) tuples: default values themselves may not pickle.
"""
import functools
import inspect
from typing import Optional, Tuple

Params = Tuple[Tuple[str, int, bool], ...]


def params_of(fn, skip_first: bool = False) -> Optional[Params]:
    """The parameters of `fn` (without its first, for a method's self); None where
    Python cannot tell (some builtins), and then calls are not checked."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if skip_first:
        parameters = parameters[1:]
    return tuple((p.name, int(p.kind), p.default is not inspect.Parameter.empty)
                 for p in parameters)


@functools.lru_cache(maxsize=1024)
def _signature(params: Params) -> inspect.Signature:
    return inspect.Signature([
        inspect.Parameter(name, inspect._ParameterKind(kind),
                          default=None if has_default else inspect.Parameter.empty)
        for name, kind, has_default in params])


@functools.lru_cache(maxsize=1024)
def _positional_bounds(params: Params) -> Tuple[int, float]:
    """How many positional arguments alone bind (a call's fast path: Signature.bind
    costs ~2 us); (1, 0), which nothing satisfies, when a keyword-only one is required."""
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(kind == inspect.Parameter.KEYWORD_ONLY and not has_default
           for _, kind, has_default in params):
        return 1, 0
    low = sum(1 for _, kind, has_default in params if kind in positional and not has_default)
    if any(kind == inspect.Parameter.VAR_POSITIONAL for _, kind, _ in params):
        return low, float("inf")
    return low, sum(1 for _, kind, _ in params if kind in positional)


def check_call(params: Optional[Params], args, kwargs, what: str) -> None:
    """TypeError naming `what` when (args, kwargs) cannot bind to `params`."""
    if params is None:
        return
    if not kwargs:
        low, high = _positional_bounds(params)
        if low <= len(args) <= high:
            return
    try:
        _signature(params).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{what}: {e}") from None

"""inspect_serializability (Ray's ray.util.inspect_serializability): which objects inside
a value, function or class keep it from pickling, so a user can see why .remote() or
put() refuses it."""
import inspect
from typing import Any, Optional, Set, Tuple

import cloudpickle


class FailureTuple:
    """One object that does not pickle: the path of names that reaches it, its parent."""

    def __init__(self, obj: Any, name: str, parent: Any):
        self.obj = obj
        self.name = name
        self.parent = parent

    def __repr__(self) -> str:
        return f"FailureTuple({self.name} [obj={self.obj!r}, parent={self.parent!r}])"


def _pickles(obj: Any) -> bool:
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception:
        return False


def _members(obj: Any):
    """(name, member) pairs a pickle of `obj` would carry."""
    if inspect.isfunction(obj):
        found = inspect.getclosurevars(obj)
        return list(found.nonlocals.items()) + list(found.globals.items())
    if inspect.isclass(obj):
        return [(k, v) for k, v in vars(obj).items() if not k.startswith("__")]
    if isinstance(obj, dict):
        return [(repr(k), v) for k, v in obj.items()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(obj)]
    if hasattr(obj, "__dict__"):
        return list(vars(obj).items())
    return []


def inspect_serializability(base_obj: Any, name: Optional[str] = None, depth: int = 3,
                            print_file: Optional[Any] = None) -> Tuple[bool, Set[FailureTuple]]:
    """(whether `base_obj` pickles, the innermost objects that do not), printed as a
    report (to `print_file`, default stdout) as Ray prints it."""
    name = name or getattr(base_obj, "__qualname__", None) or type(base_obj).__name__
    failures: Set[FailureTuple] = set()
    if _pickles(base_obj):
        print(f"Serialization of {name} succeeded.", file=print_file)
        return True, failures
    _walk(base_obj, name, depth, None, failures)
    if not failures:
        failures.add(FailureTuple(base_obj, name, None))
    print(f"Serialization of {name} failed; what does not pickle:", file=print_file)
    for failure in sorted(failures, key=lambda f: f.name):
        print(f"  {failure.name}: {type(failure.obj).__name__} {failure.obj!r}",
              file=print_file)
    return False, failures


def _walk(obj: Any, path: str, depth: int, parent: Any, failures: Set[FailureTuple]) -> None:
    """Record the innermost members along `path` that do not pickle."""
    inner = [(f"{path}.{n}", m) for n, m in _members(obj) if not _pickles(m)] \
        if depth > 0 else []
    if not inner:
        failures.add(FailureTuple(obj, path, parent))
    for member_path, member in inner:
        _walk(member, member_path, depth - 1, obj, failures)

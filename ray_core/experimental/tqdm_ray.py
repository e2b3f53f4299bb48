"""Ray's tqdm_ray: progress bars from any task or actor, drawn as one set in the driver.

A bar sends its state (a line of worker output the driver's log subscriber recognizes,
see ray_core/_private/progress_bars.py) at most every tqdm_flush_interval_s, and when
it closes; in the driver it draws directly. The subset of tqdm's API Ray supports.
"""
import os
import time
import uuid
from typing import Iterable, Optional

from ray_common.config import config

from ray_core._private import progress_bars
from ray_core._private import worker as _worker


class tqdm:
    def __init__(self, iterable: Optional[Iterable] = None, desc: Optional[str] = None,
                 total: Optional[int] = None, unit: Optional[str] = None,
                 position: Optional[int] = None, flush_interval_s: Optional[float] = None):
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except (TypeError, AttributeError):
                total = None
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._pos = position or 0
        self._uuid = uuid.uuid4().hex
        self._x = 0
        self._closed = False
        self._flush_interval_s = (config.tqdm_flush_interval_s if flush_interval_s is None
                                  else flush_interval_s)
        self._last_flush = 0.0

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._send()

    def update(self, n: int = 1) -> None:
        self._x += n
        self._send()

    def refresh(self) -> None:
        self._send(force=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send(force=True)

    @property
    def total(self) -> Optional[int]:
        return self._total

    @total.setter
    def total(self, total: int) -> None:
        self._total = total

    @property
    def n(self) -> int:
        return self._x

    @n.setter
    def n(self, n: int) -> None:
        self._x = n

    def __iter__(self):
        if self._iterable is None:
            raise ValueError("tqdm_ray.tqdm was given no iterable to iterate")
        for item in self._iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _send(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        state = {"x": self._x, "pos": self._pos, "desc": self._desc, "total": self._total,
                 "unit": self._unit, "uuid": self._uuid, "closed": self._closed}
        w = _worker._global
        if w is not None and w.mode == "worker":
            state.update(pid=os.getpid(), ip=w.core_worker.node_ip)
            print(progress_bars.state_line(state), flush=True)
        else:
            progress_bars.manager().update(state)


if _worker._global is None or _worker._global.mode == "driver":
    progress_bars.manager().patch_print()   # a driver draws bars: print() goes above them


def safe_print(*args, **kwargs) -> None:
    """print() that never lands under the bars (what print() becomes while they draw)."""
    progress_bars.manager().print_above(*args, **kwargs)

"""The driver's one set of progress bars (ray_core.experimental.tqdm_ray).

A bar in a task or actor prints its state as one line of stdout, `MAGIC` then JSON; the
log monitor carries it to the driver like any output, and the driver's LogSubscriber
hands it here instead of printing it. A bar in the driver comes here directly. Each bar
keeps one line: on a terminal the set is redrawn in place (ANSI cursor moves, as tqdm
does), elsewhere (a pipe, a file) each state that arrives is written as a line. While
bars are drawn on a terminal, print() in the driver goes through print_above (as Ray
patches print, unless tqdm_patch_print is off), so text never lands under a redraw.
"""
import builtins
import json
import sys
import threading
from typing import Dict, Optional

MAGIC = "__ray_core_tqdm__ "
_WIDTH = 20


def state_line(state: dict) -> str:
    return MAGIC + json.dumps(state)


def parse(line: str) -> Optional[dict]:
    """The bar state a line of worker output carries, or None for an ordinary line."""
    if not line.startswith(MAGIC):
        return None
    try:
        return json.loads(line[len(MAGIC):])
    except ValueError:
        return None


def render(state: dict) -> str:
    x, total = state.get("x", 0), state.get("total")
    desc = f"{state['desc']}: " if state.get("desc") else ""
    where = f" (pid={state.get('pid')}, ip={state.get('ip')})" if state.get("pid") else ""
    unit = state.get("unit") or "it"
    if total:
        done = min(max(x / total, 0.0), 1.0)
        filled = int(done * _WIDTH)
        return (f"{desc}{int(done * 100):3d}%|{'#' * filled}{' ' * (_WIDTH - filled)}| "
                f"{x}/{total} {unit}{where}")
    return f"{desc}{x} {unit}{where}"


_print = builtins.print


class BarManager:
    def __init__(self, stream=None):
        self._stream = stream
        self._bars: Dict[str, dict] = {}    # uuid -> newest state, in arrival order
        self._drawn = 0                     # lines of live bars on the terminal now
        self._lock = threading.RLock()
        self._print_patched = False

    @property
    def stream(self):
        return self._stream or sys.stderr

    def update(self, state: dict) -> None:
        with self._lock:
            key = state.get("uuid", "")
            stream = self.stream
            try:
                if stream.isatty():
                    self._redraw(stream, state, key)
                else:
                    stream.write(render(state) + "\n")
                    if state.get("closed"):
                        self._bars.pop(key, None)
                    else:
                        self._bars[key] = state
                stream.flush()
            except (OSError, ValueError):
                pass    # the terminal went away: bars are a courtesy

    def print_above(self, *args, **kwargs) -> None:
        """print() that clears the bars, prints, and draws them again below."""
        if kwargs.get("file") not in (None, sys.stdout, sys.stderr):
            return _print(*args, **kwargs)
        with self._lock:
            stream = self.stream
            if self._drawn:
                stream.write(f"\x1b[{self._drawn}A\x1b[J")
                stream.flush()
            self._drawn = 0
            _print(*args, **kwargs)
            if self._bars:
                for bar in self._bars.values():
                    stream.write(f"\x1b[2K{render(bar)}\n")
                self._drawn = len(self._bars)
                stream.flush()

    def patch_print(self) -> None:
        """print() goes through print_above from now on (unless tqdm_patch_print is off)."""
        if not self._print_patched:
            from ray_common.config import config
            if config.tqdm_patch_print:
                builtins.print = self.print_above
            self._print_patched = True

    def _redraw(self, stream, state: dict, key: str) -> None:
        self.patch_print()
        if self._drawn:
            stream.write(f"\x1b[{self._drawn}A")
        if state.get("closed"):
            self._bars.pop(key, None)
            stream.write(f"\x1b[2K{render(state)}\n")     # a closed bar stays above
        else:
            self._bars[key] = state
        for bar in self._bars.values():
            stream.write(f"\x1b[2K{render(bar)}\n")
        stream.write("\x1b[J")
        self._drawn = len(self._bars)


_manager = BarManager()


def manager() -> BarManager:
    return _manager

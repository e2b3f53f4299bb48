"""Progress of long work on the driver (Pool maps with progress=True).

The bar counts results as they reach the driver, so it needs nothing from the workers:
the tqdm package's bar when tqdm is installed, else a plain line on stderr at most every
progress_line_interval_s, so that progress=True never needs an extra install. Either
has tqdm's update(n) and close(); the caller owns it and closes it once.
"""
import sys
import time
from typing import Optional

from ray_common.config import config


def progress_bar(total: Optional[int], desc: str):
    """A bar of `total` items (None: unknown), labelled `desc`."""
    try:
        from tqdm import tqdm
    except ImportError:
        return LineProgress(total, desc)
    return tqdm(total=total, desc=desc)


class LineProgress:
    """`desc: done/total` on stderr when progress_line_interval_s has passed since the
    last line, and once more at close()."""

    def __init__(self, total: Optional[int], desc: str, stream=None):
        self.total = total
        self.desc = desc
        self.n = 0
        self._stream = stream or sys.stderr
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= config.progress_line_interval_s:
            self._last = now
            self._write()

    def close(self) -> None:
        self._write()

    def _write(self) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        self._stream.write(f"{self.desc}: {self.n}{of}\n")
        self._stream.flush()

"""Ray's ray.util.debug helpers for logging a message once per process (libraries use
them to warn without flooding the terminal from every loop iteration)."""
import threading
import time

_lock = threading.Lock()
_logged = set()
_disabled = False
_periodic_s = 0.0       # > 0: every key may log again once this long has passed
_last_reset = time.monotonic()


def log_once(key: str) -> bool:
    """True the first time `key` is seen in this process (again every period once
    enable_periodic_logging() was called); always False after disable_log_once_globally()."""
    global _last_reset
    with _lock:
        if _disabled:
            return False
        if _periodic_s and time.monotonic() - _last_reset >= _periodic_s:
            _logged.clear()
            _last_reset = time.monotonic()
        if key in _logged:
            return False
        _logged.add(key)
        return True


def disable_log_once_globally() -> None:
    """Make log_once() answer False from now on (e.g. in tests)."""
    global _disabled
    _disabled = True


def enable_periodic_logging(period_s: float = 60.0) -> None:
    """Let each key log once per period rather than once per process (Ray's period: 60 s)."""
    global _periodic_s, _last_reset
    with _lock:
        _periodic_s = period_s
        _last_reset = time.monotonic()

"""Polling helper shared by the process tests."""
import time


def wait_for(predicate, what, timeout=30.0):
    """Poll until `predicate()` is true and return its value; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)

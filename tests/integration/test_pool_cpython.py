"""CPython's own Pool tests, run unchanged against ray_core.util.multiprocessing.Pool.

The test methods are those of `_TestPool` in CPython's Lib/test/_test_multiprocessing.py
(the `test` package of the interpreter running this), inherited as they are: the same
functions (sqr, mul, exception_throwing_generator, ...) pickled into the pool's actors,
the same assertions. Only `Pool` is ours, with a quarter CPU per process so that the
class's Pool(4) and a test's own Pool(3) fit the 2-CPU cluster together. The cases that
read multiprocessing's private state or time the calls are skipped, each saying why.
"""
import functools
import unittest

import pytest

from ray_core.util.multiprocessing import Pool

cpython = pytest.importorskip("test._test_multiprocessing",
                              reason="this interpreter ships without its test package")

pytestmark = [pytest.mark.usefixtures("cluster"), pytest.mark.timeout(120)]


def _not_adapted(reason):
    return unittest.skip(f"not adapted: {reason}")(lambda self: None)


class TestCPythonPool(cpython._TestPool, unittest.TestCase):
    TYPE = "processes"
    Pool = staticmethod(functools.partial(Pool, ray_remote_args={"num_cpus": 0.25}))

    test_make_pool = _not_adapted("counts multiprocessing's private Pool._pool list")
    test_async = _not_adapted("asserts how long get() took")
    test_async_timeout = _not_adapted("asserts how long get(timeout) took")
    test_resource_warning = _not_adapted(
        "sets the private Pool._state to get multiprocessing's ResourceWarning")
    test_traceback = _not_adapted(
        "cloudpickle ships the test's bound classmethod by value, so its code has no "
        "file and the remote traceback no source line (test_pool.py checks the same "
        "with a module-level function)")

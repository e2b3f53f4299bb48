from ray_core._private import serialization
from ray_core._private.function_manager import FunctionManager, function_hash


def test_export_once_and_import_in_another_process_view():
    kv = {}
    puts = []

    def kv_put(key, value):
        puts.append(key)
        kv[key] = value

    driver = FunctionManager(kv_put, kv.get)
    offset = 10
    fn = lambda x: x + offset  # noqa: E731
    pickled = serialization.dumps_function(fn)
    fn_hash = function_hash(pickled)
    for _ in range(3):
        driver.export(fn_hash, pickled, "fn")
    assert len(puts) == 1

    worker = FunctionManager(kv_put, kv.get)   # a fresh cache, as in a worker process
    loaded = worker.load(fn_hash, "fn")
    assert loaded(1) == 11 and worker.load(fn_hash) is loaded


def test_missing_function_is_a_clear_error():
    manager = FunctionManager(lambda k, v: None, lambda k: None)
    try:
        manager.load(b"\x00" * 20, "ghost")
    except RuntimeError as e:
        assert "ghost" in str(e) and "exported" in str(e)
    else:
        raise AssertionError("expected RuntimeError")

"""A second process for the cross-process tests: `python -m tests.plasma.plasma_proc MODE
SOCKET OBJECT_ID_HEX [SIZE]`; prints one line once done, then (hold modes) waits to be killed."""
import signal
import sys
import time

import numpy as np

from ray_plasma.client import PlasmaClient


def main(mode, socket_path, object_id_hex, size="0"):
    # A background job's children start with SIGINT ignored (CI runners, `cmd &`); the
    # Ctrl-C test needs Python's KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    client = PlasmaClient(socket_path)
    object_id = bytes.fromhex(object_id_hex)
    if mode == "write":
        buf = client.create(object_id, int(size), b"from child")
        np.frombuffer(buf, dtype=np.uint32)[:] = np.arange(int(size) // 4, dtype=np.uint32)
        client.seal(object_id)
        print("sealed", flush=True)
        client.disconnect()
        return
    if mode == "hold":
        [obj] = client.get([object_id], timeout_ms=10_000)
        print("held" if obj is not None else "missing", flush=True)
    elif mode == "wait":
        print("waiting", flush=True)
        client.get([object_id])
    elif mode == "create_unsealed":
        client.create(object_id, int(size))
        print("created", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main(*sys.argv[1:])

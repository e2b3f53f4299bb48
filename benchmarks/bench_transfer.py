"""Object transfer between two raylets against a plain TCP copy of the same bytes.

For each size (100 MB, 1 GB), alternating in the same run, best of ROUNDS:
  - a pull from the holder raylet into the puller's store, into pages the puller's store
    never used (the first transfer onto a node), and again after deleting the copy, into
    pages that store already touched;
  - the plain socket copy (benchmarks/socket_copy.py) of as many bytes between two
    processes, shared memory to shared memory, into fresh and into touched pages.
The goal (issue 17) is held against the copy into fresh pages for the fresh pull and the
copy into touched pages for the touched pull: the same kind of destination memory.

The same rows run across two network namespaces joined by a veth pair (the holder and
the sender in one, the puller and the receiver in the other) when run as root with `ip`;
otherwise they are skipped. `python -m benchmarks.run transfer`.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from ray_common import rpc
from ray_common.protocol import common_pb2, node_manager_pb2 as nm, node_manager_pb2_grpc
from ray_gcs.launcher import start_gcs
from ray_plasma.client import PlasmaClient
from ray_raylet.launcher import start_raylet

from benchmarks.socket_copy import copy_seconds

TEST_WORKER = "tests.raylet.leasable_worker"
SIZES = (100 * 1024 ** 2, 1024 ** 3)
ROUNDS = 3
HOLDER_IP, PULLER_IP = "10.231.8.1", "10.231.8.2"
CLONE_NEWNET = 0x40000000


async def _pull(address, object_id, node_id):
    stub = rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, address)
    request = nm.PullObjectsRequest(object_refs=[common_pb2.ObjectReference(object_id=object_id)])
    request.locations.add(object_id=object_id, node_ids=[node_id])
    start = time.perf_counter()
    reply = await stub.PullObjects(request, timeout=600)
    assert reply.success and all(r.success for r in reply.results), reply
    return time.perf_counter() - start


def _enter_netns(name: str) -> None:
    """Move this thread (and the processes it starts from now on) into netns `name`."""
    with open(f"/var/run/netns/{name}") as f:
        if ctypes.CDLL(None, use_errno=True).setns(f.fileno(), CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns into {name}")


def _stop(procs) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(size: int, rounds: int, holder_ip: str = "127.0.0.1", puller_ip: str = "127.0.0.1",
            holder_netns: str = "", puller_netns: str = "") -> dict:
    """{"pull_fresh", "pull_touched", "copy_fresh", "copy_touched": [seconds]}.

    With netns names, this thread must be in `puller_netns`: the GCS and holder raylet
    start inside `holder_netns`, the puller raylet inside `puller_netns`."""
    root = tempfile.mkdtemp(prefix="rtb", dir="/tmp")
    procs = []
    env = dict(os.environ, RAY_CORE_WORKER_ENTRY_MODULE=TEST_WORKER)
    store = (rounds + 1) * size
    times = {"pull_fresh": [], "pull_touched": [], "copy_fresh": [], "copy_touched": []}
    try:
        if holder_netns:
            _enter_netns(holder_netns)
        gcs_proc, gcs_address = start_gcs(os.path.join(root, "gcs"), node_ip=holder_ip)
        procs.append(gcs_proc)
        proc, holder = start_raylet(gcs_address, os.path.join(root, "holder"), holder_ip,
                                    num_cpus=1, object_store_memory=store, env=env)
        procs.append(proc)
        if puller_netns:
            _enter_netns(puller_netns)
        proc, puller = start_raylet(gcs_address, os.path.join(root, "puller"), puller_ip,
                                    num_cpus=1, object_store_memory=store, env=env)
        procs.append(proc)
        client = PlasmaClient(holder["object_store_socket"])
        ids = [os.urandom(28) for _ in range(rounds)]
        block = os.urandom(1 << 20)
        for object_id in ids:
            buffer = client.create(object_id, size)
            for offset in range(0, size, len(block)):
                buffer[offset:offset + len(block)] = block[:size - offset]
            del buffer
            client.seal(object_id)
        client.disconnect()
        local = PlasmaClient(puller["object_store_socket"])

        def pull(object_id):
            return rpc.run_sync(_pull(puller["raylet_address"], object_id,
                                      bytes.fromhex(holder["node_id"])))

        def copy(mode):
            return copy_seconds(size, 1, mode, receiver_host=puller_ip,
                                sender_netns=holder_netns or None,
                                receiver_netns=puller_netns or None)[0]

        for object_id in ids:          # each lands where the puller's store never wrote
            times["copy_fresh"].append(copy("fresh"))
            times["pull_fresh"].append(pull(object_id))
        for object_id in ids:          # each lands where the previous one was
            local.delete([object_id])
            times["copy_touched"].append(copy("touched"))
            times["pull_touched"].append(pull(object_id))
        local.disconnect()
        return times
    finally:
        _stop(procs)
        shutil.rmtree(root, ignore_errors=True)


class _Namespaces:
    """Two network namespaces joined by a veth pair; removed on exit."""

    def __init__(self):
        tag = os.getpid() % 100000
        self.holder, self.puller = f"rtb{tag}a", f"rtb{tag}b"
        self._made = []

    def __enter__(self):
        veth_a, veth_b = f"{self.holder}v", f"{self.puller}v"
        steps = [["netns", "add", self.holder], ["netns", "add", self.puller],
                 ["link", "add", veth_a, "type", "veth", "peer", "name", veth_b],
                 ["link", "set", veth_a, "netns", self.holder],
                 ["link", "set", veth_b, "netns", self.puller]]
        for ns, veth, ip in ((self.holder, veth_a, HOLDER_IP), (self.puller, veth_b, PULLER_IP)):
            steps += [["-n", ns, "addr", "add", f"{ip}/24", "dev", veth],
                      ["-n", ns, "link", "set", veth, "up"], ["-n", ns, "link", "set", "lo", "up"]]
        try:
            for step in steps:
                subprocess.run(["ip", *step], check=True, capture_output=True)
                if step[:2] == ["netns", "add"]:
                    self._made.append(step[2])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_):
        for ns in self._made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _measure_in_namespaces(size: int, rounds: int) -> dict:
    """measure() in a child started inside the puller's namespace (its io thread, made
    there, reaches the puller raylet's address)."""
    with _Namespaces() as ns:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        child = subprocess.run(
            ["ip", "netns", "exec", ns.puller, sys.executable, "-m", "benchmarks.bench_transfer",
             str(size), str(rounds), HOLDER_IP, PULLER_IP, ns.holder, ns.puller],
            capture_output=True, text=True, env=env, timeout=1800)
        if child.returncode:
            raise RuntimeError(f"namespace run failed: {child.stderr[-3000:]}")
        return json.loads(child.stdout.strip().splitlines()[-1])


def _rows(where: str, size: int, times: dict):
    mb = size / 1024 ** 2
    label = f"{mb:.0f} MB" if size < 1024 ** 3 else f"{size / 1024 ** 3:.0f} GB"
    return [(f"pull {label} into fresh pages, {where}", mb / min(times["pull_fresh"]), "MB/s",
             mb / min(times["copy_fresh"]), "copy MB/s"),
            (f"pull {label} into touched pages, {where}", mb / min(times["pull_touched"]),
             "MB/s", mb / min(times["copy_touched"]), "copy MB/s")]


def run():
    rows = []
    for size in SIZES:
        rows += _rows("one machine", size, measure(size, ROUNDS))
    if os.geteuid() == 0 and shutil.which("ip"):
        for size in SIZES:
            rows += _rows("two netns", size, _measure_in_namespaces(size, ROUNDS))
    return rows


if __name__ == "__main__":
    size, rounds, holder_ip, puller_ip, holder_ns, puller_ns = sys.argv[1:]
    print(json.dumps(measure(int(size), int(rounds), holder_ip, puller_ip, holder_ns,
                             puller_ns)))

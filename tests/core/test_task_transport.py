"""The framed task socket: a real TaskServer against the asyncio TaskConnection."""
import asyncio
import threading

from ray_common.ids import WorkerID
from ray_common.protocol import core_worker_pb2

from ray_core._private import task_transport


def task_id(i: int) -> bytes:
    return i.to_bytes(24, "little")


def serve(server, stop):
    """A tiny worker loop: echo each pushed task id back as a reply."""
    while not stop.is_set():
        for conn, request in server.poll(0.05):
            reply = core_worker_pb2.PushTaskReply(task_id=request.task_spec.task_id)
            server.send_replies(conn, [reply])


def run_exchange(token_server, token_client, address_of):
    server = task_transport.TaskServer(WorkerID.from_random().hex(), "127.0.0.1", token_server)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(server, stop))
    thread.start()
    got, lost = [], []

    async def main():
        conn = await task_transport.connect(
            address_of(server), token_client,
            lambda c, batch: got.extend(r.task_id for r in batch.replies),
            lambda c, exc: lost.append(exc))
        batch = core_worker_pb2.PushTaskBatch()
        for i in range(100):
            spec = batch.requests.add().task_spec
            spec.task_id, spec.job_id = task_id(i), b"\1\0\0\0"
        conn.send_batch(batch)
        for _ in range(200):
            if len(got) == 100 or lost:
                break
            await asyncio.sleep(0.01)
        conn.close()

    try:
        asyncio.run(main())
    finally:
        stop.set()
        thread.join()
        server.close()
    return got, lost


def test_batch_round_trip_over_abstract_unix_socket():
    got, lost = run_exchange("tok", "tok", lambda s: s.unix_name)
    assert got == [task_id(i) for i in range(100)]


def test_batch_round_trip_over_tcp():
    got, _ = run_exchange("", "", lambda s: f"127.0.0.1:{s.tcp_port}")
    assert len(got) == 100


def test_wrong_token_is_refused():
    got, lost = run_exchange("right", "wrong", lambda s: s.unix_name)
    assert got == [] and len(lost) == 1


def test_split_frames_keeps_partial_tail():
    frame = task_transport.encode_frame(task_transport.KIND_REPLY, b"abc")
    buffer = bytearray(frame + frame[:3])
    frames = task_transport._split_frames(buffer)
    assert frames == [(task_transport.KIND_REPLY, b"abc")] and bytes(buffer) == frame[:3]

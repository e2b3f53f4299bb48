"""Pubsub: two subscribers get every message in order; a slow one loses only the oldest
and never holds up the publisher or the others."""
import asyncio

from ray_common import rpc
from ray_common.ids import UniqueID
from ray_common.protocol import gcs_service_pb2 as pb, gcs_service_pb2_grpc
from ray_gcs.client import GcsClient
from tests.gcs.conftest import wait_for

BUFFER = 100
BATCHES, BATCH_SIZE = 40, 25
LINE = "x" * 32 * 1024  # big enough that the slow stream's transport buffers fill up


def log_message(index):
    return pb.PubMessage(channel_type=pb.WORKER_LOG_CHANNEL, log_batch_message=pb.LogBatch(
        pid=index, lines=[LINE]))


async def open_unread_stream(address):
    """A subscriber that registers and then reads nothing until told to."""
    stub = rpc.stub(gcs_service_pb2_grpc.InternalPubSubGcsServiceStub, address)
    call = stub.Subscribe(pb.SubscribeRequest(subscriber_id=UniqueID.from_random().binary(),
                                              channels=[pb.WORKER_LOG_CHANNEL]))
    await call.initial_metadata()
    return call


async def drain_until(call, last_pid):
    received = []
    while not received or received[-1].log_batch_message.pid != last_pid:
        received.append(await asyncio.wait_for(call.read(), 30))
    call.cancel()
    return received


def test_two_subscribers_and_a_slow_one(gcs_processes):
    _, address = gcs_processes.start(env={"RAY_CORE_PUBLISHER_MAX_BUFFERED_MESSAGES": str(BUFFER)})
    publisher, first_client, second_client = (GcsClient(address) for _ in range(3))
    first, second = [], []
    subscriptions = [first_client.sync.subscribe([pb.WORKER_LOG_CHANNEL], first.append),
                     second_client.sync.subscribe([pb.WORKER_LOG_CHANNEL, pb.JOB_CHANNEL],
                                                  second.append)]
    for subscription in subscriptions:
        rpc.run_sync(subscription.wait_ready(10))
    slow = rpc.run_sync(open_unread_stream(address))

    total = BATCHES * BATCH_SIZE
    for batch in range(BATCHES):
        publisher.sync.publish([log_message(batch * BATCH_SIZE + i) for i in range(BATCH_SIZE)])
        done = (batch + 1) * BATCH_SIZE
        wait_for(lambda: len(first) >= done and len(second) >= done,
                 f"both subscribers to receive {done} messages")
    for received in (first, second):
        assert [m.log_batch_message.pid for m in received] == list(range(total))
        sequence = [m.sequence_id for m in received]
        assert sequence == sorted(sequence)

    slow_received = rpc.run_sync(drain_until(slow, total - 1))
    pids = [m.log_batch_message.pid for m in slow_received]
    assert pids == sorted(pids) and pids[-1] == total - 1
    assert len(pids) < total, "the slow subscriber should have lost its oldest messages"
    # What it lost is a run of old messages: the newest BUFFER ones all arrived.
    assert pids[-BUFFER:] == list(range(total - BUFFER, total))
    for subscription in subscriptions:
        subscription.close()
    log = open(gcs_processes.log_path()).read()
    assert "reads too slowly: dropped" in log


def test_key_filter_and_client_published_errors(gcs_processes):
    _, address = gcs_processes.start()
    client = GcsClient(address)
    wanted, everything = [], []
    job = b"\x01\x00\x00\x00"
    subscriptions = [
        client.sync.subscribe([pb.ERROR_INFO_CHANNEL], wanted.append, key_ids=[job]),
        client.sync.subscribe([pb.ERROR_INFO_CHANNEL], everything.append)]
    for subscription in subscriptions:
        rpc.run_sync(subscription.wait_ready(10))
    client.sync.publish([
        pb.PubMessage(channel_type=pb.ERROR_INFO_CHANNEL, key_id=key,
                      error_info_message=pb.ErrorTableData(job_id=key, error_message=text))
        for key, text in ((b"\x02\x00\x00\x00", "other job"), (job, "this job"))])
    wait_for(lambda: len(everything) == 2, "both errors")
    wait_for(lambda: wanted, "the filtered error")
    assert [m.error_info_message.error_message for m in everything] == ["other job", "this job"]
    assert [m.error_info_message.error_message for m in wanted] == ["this job"]
    for subscription in subscriptions:
        subscription.close()

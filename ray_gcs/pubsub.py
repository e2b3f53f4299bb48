"""The GCS publisher: table changes pushed to subscribers over a server stream.

Each subscriber (one Subscribe stream) gets a bounded queue of
publisher_max_buffered_messages. Publishing only appends to queues, so a subscriber
that reads slowly never blocks a publisher or the other subscribers: when its queue is
full the oldest message is dropped and counted, and the count is logged (at the first
drop and each time it doubles). The stream's coroutine drains the queue at the pace
that gRPC flow control allows.

A subscriber re-subscribing with the same subscriber_id (after a reconnect) replaces
its old stream. Subscriptions are not stored: after a GCS restart the clients
subscribe again (GcsClient does that by itself). A channel may have a snapshot (the
resource view has one): a new subscriber gets it first.
"""
import asyncio
import collections
import logging

import grpc
from typing import Callable, Dict, Iterable

from ray_common.config import config
from ray_common.protocol import gcs_service_pb2, gcs_service_pb2_grpc
from ray_gcs import errors

logger = logging.getLogger(__name__)


class _Subscriber:
    def __init__(self, subscriber_id: bytes, channels, key_ids, capacity: int):
        self.subscriber_id = subscriber_id
        self.channels = frozenset(channels)
        self.key_ids = frozenset(key_ids)
        self.capacity = capacity
        self.queue: collections.deque = collections.deque()
        self.wakeup = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def wants(self, message) -> bool:
        return (message.channel_type in self.channels
                and (not self.key_ids or message.key_id in self.key_ids))

    def push(self, message) -> None:
        if len(self.queue) >= self.capacity:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:
                logger.warning("Subscriber %s reads too slowly: dropped %d oldest message(s) "
                               "so far (buffer of %d, publisher_max_buffered_messages)",
                               self.subscriber_id.hex(), self.dropped, self.capacity)
        self.queue.append(message)
        self.wakeup.set()

    async def messages(self):
        """Each message as it arrives, until the subscriber is closed."""
        while not self.closed:
            while self.queue:
                yield self.queue.popleft()
            self.wakeup.clear()
            if not self.queue and not self.closed:
                await self.wakeup.wait()

    def close(self) -> None:
        self.closed = True
        self.wakeup.set()


class GcsPublisher:
    def __init__(self):
        self._subscribers: Dict[bytes, _Subscriber] = {}
        self._sequence = 0
        self._snapshots: Dict[int, Callable[[], gcs_service_pb2.PubMessage]] = {}

    def set_snapshot(self, channel: int, snapshot: Callable[[], gcs_service_pb2.PubMessage]):
        """A (re)subscriber to `channel` first gets `snapshot()`: the state it may have
        missed while it was away (e.g. the resource view right after a GCS restart)."""
        self._snapshots[channel] = snapshot

    @property
    def num_subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, channel: int, key_id: bytes = b"", **inner) -> None:
        """Publish one message: `inner` is its one oneof field, e.g. node_info_message=info."""
        self.publish_message(gcs_service_pb2.PubMessage(channel_type=channel, key_id=key_id,
                                                        **inner))

    def publish_message(self, message) -> None:
        self._sequence += 1
        message.sequence_id = self._sequence
        for subscriber in self._subscribers.values():
            if subscriber.wants(message):
                subscriber.push(message)

    def add_subscriber(self, subscriber_id: bytes, channels: Iterable[int],
                       key_ids: Iterable[bytes]) -> _Subscriber:
        old = self._subscribers.pop(subscriber_id, None)
        if old is not None:
            old.close()
        subscriber = _Subscriber(subscriber_id, channels, key_ids,
                                 max(1, int(config.publisher_max_buffered_messages)))
        self._subscribers[subscriber_id] = subscriber
        for channel in subscriber.channels:
            if channel in self._snapshots:
                message = self._snapshots[channel]()
                message.sequence_id = self._sequence
                if subscriber.wants(message):
                    subscriber.push(message)
        return subscriber

    def remove_subscriber(self, subscriber: _Subscriber) -> None:
        if self._subscribers.get(subscriber.subscriber_id) is subscriber:
            del self._subscribers[subscriber.subscriber_id]
        subscriber.close()

    def close_all(self) -> None:
        for subscriber in list(self._subscribers.values()):
            self.remove_subscriber(subscriber)


class PubSubServicer(gcs_service_pb2_grpc.InternalPubSubGcsServiceServicer):
    def __init__(self, publisher: GcsPublisher):
        self._publisher = publisher

    async def Subscribe(self, request, context):
        valid = set(gcs_service_pb2.ChannelType.values())
        bad = [c for c in request.channels if c not in valid]
        if not request.subscriber_id or not request.channels or bad:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Subscribe needs a subscriber_id and known channels; got subscriber_id "
                f"{request.subscriber_id.hex() or '(empty)'}, channels {list(request.channels)}")
        subscriber = self._publisher.add_subscriber(request.subscriber_id, request.channels,
                                                    request.key_ids)
        logger.info("Subscriber %s subscribed to %s", request.subscriber_id.hex(),
                    [gcs_service_pb2.ChannelType.Name(c) for c in request.channels])
        try:
            # Tells the client its subscription is registered (GcsClient waits for it).
            await context.send_initial_metadata(())
            async for message in subscriber.messages():
                yield message
        finally:
            self._publisher.remove_subscriber(subscriber)
            logger.info("Subscriber %s left (%d message(s) dropped)",
                        request.subscriber_id.hex(), subscriber.dropped)

    @errors.handler
    async def Publish(self, request, context):
        for message in request.messages:
            if message.WhichOneof("inner_message") is None:
                raise errors.invalid("Publish: a PubMessage has no payload "
                                     f"(channel {message.channel_type})")
        for message in request.messages:
            self._publisher.publish_message(message)
        return gcs_service_pb2.PublishReply()


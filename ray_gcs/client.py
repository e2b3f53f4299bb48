"""GcsClient: the one client of the GCS that raylets, workers and drivers use.

Every method is a coroutine for the process's io loop (`ray_common.rpc.io_loop()`);
`client.sync.<method>(...)` is the blocking form for code off that loop. The
constructor does no I/O; stubs are made on first use.

Reconnects: a call that finds the GCS unreachable (UNAVAILABLE, or a deadline passed)
is retried with backoff (rpc_retry_initial_backoff_ms doubling up to
rpc_retry_max_backoff_ms) for gcs_rpc_server_reconnect_timeout_s, so a GCS restarted on
the same address is found again, then fails with GcsUnavailableError. Other failures
map to the GcsError subclasses of ray_gcs.errors at once. A subscription re-subscribes
by itself whenever its stream breaks (a GCS restart), until it is closed; messages
published while it was away are not replayed.
"""
import asyncio
import logging
import random
from typing import Callable, Dict, Iterable, List, Optional

import grpc

from ray_common import rpc
from ray_common.config import config
from ray_common.ids import JobID, UniqueID
from ray_common.protocol import common_pb2, gcs_service_pb2 as pb, gcs_service_pb2_grpc as grpc_pb
from ray_gcs import errors
from ray_gcs.placement_group_batch import PlacementGroupBatcher

logger = logging.getLogger(__name__)

_RECONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

_STUBS = {
    "kv": grpc_pb.InternalKVGcsServiceStub,
    "node": grpc_pb.NodeInfoGcsServiceStub,
    "resource": grpc_pb.NodeResourceInfoGcsServiceStub,
    "job": grpc_pb.JobInfoGcsServiceStub,
    "worker": grpc_pb.WorkerInfoGcsServiceStub,
    "actor": grpc_pb.ActorInfoGcsServiceStub,
    "pg": grpc_pb.PlacementGroupInfoGcsServiceStub,
    "pubsub": grpc_pb.InternalPubSubGcsServiceStub,
    "task": grpc_pb.TaskInfoGcsServiceStub,
}


def _backoff_steps():
    delay = config.rpc_retry_initial_backoff_ms / 1000.0
    cap = config.rpc_retry_max_backoff_ms / 1000.0
    while True:
        yield delay * (1 + 0.2 * random.random())
        delay = min(delay * 2, cap)


class Subscription:
    """A live subscription; its callback runs on the io loop for each message."""

    def __init__(self, client: "GcsClient", channels, callback, key_ids):
        self._client = client
        self._request = pb.SubscribeRequest(subscriber_id=UniqueID.from_random().binary(),
                                            channels=list(channels), key_ids=list(key_ids or ()))
        self._callback = callback
        self._ready = asyncio.Event()
        self._closed = False
        self.subscribe_count = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def subscriber_id(self) -> bytes:
        return self._request.subscriber_id

    async def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Wait until the GCS has registered this subscription (publishes reach it)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    def close(self) -> None:
        self._closed = True
        self._task.cancel()
        self._client._subscriptions.discard(self)

    async def _run(self) -> None:
        backoff = _backoff_steps()
        while not self._closed:
            call = None
            try:
                call = self._client._stub("pubsub").Subscribe(self._request)
                await call.initial_metadata()
                if not call.done():
                    self._ready.set()
                    self.subscribe_count += 1
                    backoff = _backoff_steps()
                async for message in call:
                    try:
                        self._callback(message)
                    except Exception:  # noqa: BLE001 - a bad callback must not end the stream
                        logger.exception("Subscription callback failed on %s message",
                                         pb.ChannelType.Name(message.channel_type))
            except grpc.aio.AioRpcError as e:
                if e.code() not in _RECONNECT_CODES and e.code() != grpc.StatusCode.CANCELLED:
                    logger.error("GCS subscription at %s failed: %s %s", self._client.address,
                                 e.code().name, e.details())
            except grpc.aio.UsageError:
                self._client._stubs.clear()  # its channel was closed; the next try opens one
            except asyncio.CancelledError:
                if self._closed or asyncio.current_task().cancelling():
                    raise
                # The call was cancelled under us (its channel was closed): subscribe again.
                self._client._stubs.clear()
            except Exception:  # noqa: BLE001 - keep the subscription alive whatever happens
                logger.exception("GCS subscription at %s broke", self._client.address)
            finally:
                if call is not None:
                    call.cancel()
            self._ready.clear()
            if not self._closed:
                logger.info("GCS subscription stream to %s ended; subscribing again",
                            self._client.address)
                await asyncio.sleep(next(backoff))


class _SyncClient:
    """`client.sync.kv_get(...)`: the blocking form of every coroutine method."""

    def __init__(self, client: "GcsClient"):
        self._client = client

    def __getattr__(self, name: str):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            if not asyncio.iscoroutinefunction(method):
                async def on_loop():
                    return method(*args, **kwargs)
                return rpc.run_sync(on_loop())
            return rpc.run_sync(method(*args, **kwargs))

        call.__name__ = name
        return call


class GcsClient:
    def __init__(self, address: str, why_unreachable: Optional[Callable[[], Optional[str]]] = None):
        """`why_unreachable()` may know why the GCS does not answer (its supervisor left a
        note that it died for good): then calls fail at once with that reason instead of
        retrying for gcs_rpc_server_reconnect_timeout_s."""
        self.address = address
        self._why_unreachable = why_unreachable
        self._stubs: Dict[str, object] = {}
        self._subscriptions = set()
        self.sync = _SyncClient(self)
        self.placement_groups = PlacementGroupBatcher(
            lambda request: self._call("pg", "PlacementGroupBatch", request), errors.GcsError)

    def _stub(self, name: str):
        stub = self._stubs.get(name)
        if stub is None:
            stub = self._stubs[name] = rpc.stub(_STUBS[name], self.address)
        return stub

    async def _call(self, service: str, method: str, request, timeout: Optional[float] = None):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.gcs_rpc_server_reconnect_timeout_s
        backoff = _backoff_steps()
        warned = False
        while True:
            try:
                return await getattr(self._stub(service), method)(
                    request, timeout=timeout or config.rpc_default_deadline_s)
            except (grpc.aio.UsageError, asyncio.CancelledError):
                # Someone closed the cached channel (rpc.forget_channel), failing or
                # cancelling this call: open a new channel and try again.
                if asyncio.current_task().cancelling() or loop.time() >= deadline:
                    raise
                self._stubs.clear()
            except grpc.aio.AioRpcError as e:
                why = self._why_unreachable() if self._why_unreachable is not None and \
                    e.code() in _RECONNECT_CODES else None
                if why:
                    raise errors.GcsUnavailableError(
                        f"GCS {method} at {self.address} failed: {why}", e.code()) from None
                if e.code() not in _RECONNECT_CODES or loop.time() >= deadline:
                    raise errors.from_rpc_error(e, method, self.address) from None
                if not warned:
                    logger.warning("GCS at %s unreachable (%s on %s); retrying for up to %ss",
                                   self.address, e.code().name, method,
                                   config.gcs_rpc_server_reconnect_timeout_s)
                    warned = True
                await asyncio.sleep(min(next(backoff), max(0.0, deadline - loop.time())))

    # ---- internal KV ----------------------------------------------------------

    async def kv_put(self, key: bytes, value: bytes, *, overwrite: bool = True,
                     namespace: str = "") -> bool:
        reply = await self._call("kv", "InternalKVPut", pb.InternalKVPutRequest(
            key=key, value=value, overwrite=overwrite, namespace=namespace))
        return reply.added

    async def kv_get(self, key: bytes, *, namespace: str = "") -> Optional[bytes]:
        reply = await self._call("kv", "InternalKVGet",
                                 pb.InternalKVGetRequest(key=key, namespace=namespace))
        return reply.value if reply.found else None

    async def kv_multi_get(self, keys: Iterable[bytes], *, namespace: str = "") -> Dict[bytes, bytes]:
        reply = await self._call("kv", "InternalKVMultiGet",
                                 pb.InternalKVMultiGetRequest(keys=list(keys), namespace=namespace))
        return {entry.key: entry.value for entry in reply.results}

    async def kv_del(self, key: bytes, *, namespace: str = "", by_prefix: bool = False) -> int:
        reply = await self._call("kv", "InternalKVDel", pb.InternalKVDelRequest(
            key=key, namespace=namespace, del_by_prefix=by_prefix))
        return reply.deleted_num

    async def kv_exists(self, key: bytes, *, namespace: str = "") -> bool:
        reply = await self._call("kv", "InternalKVExists",
                                 pb.InternalKVExistsRequest(key=key, namespace=namespace))
        return reply.exists

    async def kv_keys(self, prefix: bytes, *, namespace: str = "") -> List[bytes]:
        reply = await self._call("kv", "InternalKVKeys",
                                 pb.InternalKVKeysRequest(prefix=prefix, namespace=namespace))
        return list(reply.results)

    # ---- nodes and resources --------------------------------------------------

    async def register_node(self, info: common_pb2.NodeInfo) -> None:
        await self._call("node", "RegisterNode", pb.RegisterNodeRequest(node_info=info))

    async def unregister_node(self, node_id: bytes, reason: str = "") -> None:
        await self._call("node", "UnregisterNode",
                         pb.UnregisterNodeRequest(node_id=_binary(node_id), reason=reason))

    async def drain_node(self, node_id: bytes, reason: str = "") -> bool:
        reply = await self._call("node", "DrainNode",
                                 pb.DrainNodeRequest(node_id=_binary(node_id), reason=reason))
        return reply.accepted

    async def get_all_node_info(self, only_alive: bool = False) -> List[common_pb2.NodeInfo]:
        reply = await self._call("node", "GetAllNodeInfo",
                                 pb.GetAllNodeInfoRequest(only_alive=only_alive))
        return list(reply.node_info_list)

    async def check_alive(self, node_ids: Iterable[bytes]) -> List[bool]:
        reply = await self._call("node", "CheckAlive", pb.CheckAliveRequest(
            node_ids=[_binary(n) for n in node_ids]))
        return list(reply.alive)

    async def report_resource_usage(self, data: common_pb2.ResourcesData) -> None:
        await self._call("resource", "ReportResourceUsage",
                         pb.ReportResourceUsageRequest(resources=data))

    async def get_cluster_resource_view(self) -> List[common_pb2.ResourcesData]:
        reply = await self._call("resource", "GetClusterResourceView",
                                 pb.GetClusterResourceViewRequest())
        return list(reply.nodes)

    # ---- task events ----------------------------------------------------------

    async def add_task_event_data(self, data: pb.TaskEventData) -> None:
        """One try, no reconnect loop: a batch that does not arrive is counted as dropped
        by its sender, which must not pile batches up behind a GCS that is away."""
        await self._stub("task").AddTaskEventData(pb.AddTaskEventDataRequest(data=data),
                                                  timeout=config.rpc_default_deadline_s)

    async def get_task_events(self, *, job_id: bytes = b"", task_ids: Iterable[bytes] = (),
                              actor_id: bytes = b"", limit: int = 0) -> pb.GetTaskEventsReply:
        return await self._call("task", "GetTaskEvents", pb.GetTaskEventsRequest(
            job_id=job_id, task_ids=list(task_ids), actor_id=actor_id, limit=limit))

    # ---- jobs -----------------------------------------------------------------

    async def add_job(self, data: pb.JobTableData) -> JobID:
        reply = await self._call("job", "AddJob", pb.AddJobRequest(data=data))
        return JobID(reply.job_id)

    async def mark_job_finished(self, job_id) -> None:
        await self._call("job", "MarkJobFinished",
                         pb.MarkJobFinishedRequest(job_id=_binary(job_id)))

    async def get_all_job_info(self) -> List[pb.JobTableData]:
        reply = await self._call("job", "GetAllJobInfo", pb.GetAllJobInfoRequest())
        return list(reply.job_info_list)

    # ---- workers --------------------------------------------------------------

    async def add_worker_info(self, data: pb.WorkerTableData) -> None:
        await self._call("worker", "AddWorkerInfo", pb.AddWorkerInfoRequest(worker_data=data))

    async def report_worker_failure(self, data: pb.WorkerTableData) -> None:
        await self._call("worker", "ReportWorkerFailure",
                         pb.ReportWorkerFailureRequest(worker_failure=data))

    async def get_all_worker_info(self) -> List[pb.WorkerTableData]:
        reply = await self._call("worker", "GetAllWorkerInfo", pb.GetAllWorkerInfoRequest())
        return list(reply.worker_table_data)

    # ---- actors ---------------------------------------------------------------

    async def get_actor_info(self, actor_id: bytes) -> Optional[pb.ActorTableData]:
        reply = await self._call("actor", "GetActorInfo",
                                 pb.GetActorInfoRequest(actor_id=_binary(actor_id)))
        return reply.actor_table_data if reply.found else None

    async def get_named_actor_info(self, name: str, namespace: str = "") -> Optional[pb.ActorTableData]:
        reply = await self._call("actor", "GetNamedActorInfo",
                                 pb.GetNamedActorInfoRequest(name=name, ray_namespace=namespace))
        return reply.actor_table_data if reply.found else None

    async def list_named_actors(self, all_namespaces: bool = False,
                                namespace: str = "") -> List[pb.NamedActorEntry]:
        reply = await self._call("actor", "ListNamedActors", pb.ListNamedActorsRequest(
            all_namespaces=all_namespaces, ray_namespace=namespace))
        return list(reply.named_actors_list)

    async def register_actor(self, task_spec: common_pb2.TaskSpec) -> None:
        await self._call("actor", "RegisterActor", pb.RegisterActorRequest(task_spec=task_spec))

    async def kill_actor(self, actor_id, *, force_kill: bool = True, no_restart: bool = True,
                         reason: str = "") -> None:
        await self._call("actor", "KillActorViaGcs", pb.KillActorViaGcsRequest(
            actor_id=_binary(actor_id), force_kill=force_kill, no_restart=no_restart,
            reason=reason))

    async def get_all_actor_info(self) -> List[pb.ActorTableData]:
        reply = await self._call("actor", "GetAllActorInfo", pb.GetAllActorInfoRequest())
        return list(reply.actor_table_data)

    # ---- placement groups -----------------------------------------------------

    # Creations and removals go through self.placement_groups (a PlacementGroupBatcher);
    # every read below first waits for what was queued before it.

    async def get_all_placement_group(self) -> List[pb.PlacementGroupTableData]:
        await self.placement_groups.flush()
        reply = await self._call("pg", "GetAllPlacementGroup", pb.GetAllPlacementGroupRequest())
        return list(reply.placement_group_table_data)

    async def get_placement_group(self, placement_group_id: bytes
                                  ) -> Optional[pb.PlacementGroupTableData]:
        await self.placement_groups.flush()
        return _group_row(await self._call("pg", "GetPlacementGroup", pb.GetPlacementGroupRequest(
            placement_group_id=_binary(placement_group_id))))

    async def wait_placement_group_until_ready(self, placement_group_id: bytes,
                                              timeout: Optional[float] = None) -> bool:
        """True once the group is placed, False when `timeout` seconds (None: no limit)
        pass first; GcsFailedPreconditionError if it was removed."""
        await self.placement_groups.flush()
        if self.placement_groups.placed(_binary(placement_group_id)):
            return True
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            chunk = config.placement_group_wait_chunk_s
            left = chunk if end is None else min(chunk, max(0.0, end - loop.time()))
            reply = await self._call("pg", "WaitPlacementGroupUntilReady",
                                     pb.WaitPlacementGroupUntilReadyRequest(
                                         placement_group_id=_binary(placement_group_id),
                                         timeout_ms=int(left * 1000)),
                                     timeout=left + config.rpc_default_deadline_s)
            if reply.ready or (end is not None and loop.time() >= end):
                return reply.ready

    async def get_named_placement_group(self, name: str, namespace: str = ""
                                        ) -> Optional[pb.PlacementGroupTableData]:
        await self.placement_groups.flush()
        return _group_row(await self._call("pg", "GetNamedPlacementGroup",
                                           pb.GetNamedPlacementGroupRequest(
                                               name=name, ray_namespace=namespace)))

    # ---- pubsub ---------------------------------------------------------------

    async def publish(self, messages: List[pb.PubMessage]) -> None:
        await self._call("pubsub", "Publish", pb.PublishRequest(messages=messages))

    def subscribe(self, channels: List[int], callback: Callable[[pb.PubMessage], None],
                  key_ids: Optional[List[bytes]] = None) -> Subscription:
        """Subscribe on the io loop (the callback runs there); see Subscription."""
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("GcsClient.subscribe must be called on the io loop; from "
                               "another thread use client.sync.subscribe(...)") from None
        subscription = Subscription(self, channels, callback, key_ids)
        self._subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        """Close this client's subscriptions (the channel is shared and stays cached), once
        the placement group requests queued are sent."""
        await self.placement_groups.flush()
        for subscription in list(self._subscriptions):
            subscription.close()
        self._stubs.clear()


def _binary(value) -> bytes:
    """Ids may be passed as ray_common.ids objects or raw bytes."""
    return value if isinstance(value, bytes) else value.binary()


def _group_row(reply) -> Optional[pb.PlacementGroupTableData]:
    """The row a placement group lookup found, or None (the field is unset)."""
    return reply.placement_group_table_data \
        if reply.HasField("placement_group_table_data") else None

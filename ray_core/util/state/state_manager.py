"""StateDataSource: the one place the state API, the CLI (and a dashboard) read a
cluster's state from, so they never disagree.

Everything comes from where it already lives: tasks from the GCS task table (events the
owners and workers sent), actors, nodes, workers, jobs and placement groups from the GCS
tables, objects from each owner and borrower (every raylet names its workers and drivers,
each answers GetObjectsInfo, as `ray_core memory` does), log files and stacks from each
node's raylet. Calls run on this process's io loop, concurrently per source, each within
the caller's timeout; a source that does not answer is named in `warnings` (and is an
error with raise_on_missing_output).
"""
import asyncio
import json
import os
from typing import Dict, List, Optional, Tuple

import grpc

from ray_common import rpc
from ray_common.config import config
from ray_common.protocol import (common_pb2, core_worker_pb2, core_worker_pb2_grpc,
                                 gcs_service_pb2, node_manager_pb2, node_manager_pb2_grpc)

from ray_core.util.state.common import (ActorState, JobState, NodeState, ObjectState,
                                        PlacementGroupState, RayStateApiException, TaskState,
                                        WorkerState)

_ACTOR_STATES = gcs_service_pb2.ActorTableData.ActorState
_PG_STATES = {gcs_service_pb2.PG_PENDING: "PENDING", gcs_service_pb2.PG_CREATED: "CREATED",
              gcs_service_pb2.PG_REMOVED: "REMOVED",
              gcs_service_pb2.PG_RESCHEDULING: "RESCHEDULING"}
_TASK_TYPES = common_pb2.TaskType
# Ray's ObjectState.reference_type for the reasons `ray_core memory` gives.
_REFERENCE_TYPES = {"CONTAINED_IN": "CAPTURED_IN_OBJECT", "PINNED_BY_GET": "PINNED_IN_MEMORY",
                    "BORROWED_BY": "LOCAL_REFERENCE", "BORROWER": "LOCAL_REFERENCE"}


def _hex(value: bytes) -> Optional[str]:
    return value.hex() if value else None


def _ms(time_us: int) -> Optional[int]:
    return time_us // 1000 if time_us else None


def _address(address: common_pb2.Address) -> Optional[str]:
    return f"{address.ip_address}:{address.port}" if address.port else None


def resolve_address(address: Optional[str]) -> Tuple[str, Optional[str]]:
    """(GCS address, token) of the cluster to read: `address`, else this driver's, else
    RAY_CORE_ADDRESS / the `address` tunable, else the cluster started on this machine."""
    from ray_core._private import worker
    from ray_core.node import local_cluster_token, read_current_cluster
    if worker.is_initialized():
        own = worker.global_worker().core_worker.gcs_address
        if address in (None, "auto", own):
            return own, rpc.auth_token()
    if address in (None, "auto"):
        address = os.environ.get("RAY_CORE_ADDRESS") or config.address or \
            (read_current_cluster(config.temp_dir) or {}).get("gcs_address")
    if not address:
        raise ConnectionError(f"no ray_core cluster found: none was started under "
                              f"{config.temp_dir}; pass address='HOST:PORT' (or "
                              f"--address), or set RAY_CORE_ADDRESS")
    token = config.auth_token or local_cluster_token(config.temp_dir, address) or \
        rpc.auth_token()
    return address, token


class StateDataSource:
    def __init__(self, address: Optional[str] = None):
        from ray_gcs.client import GcsClient
        self.address, self.token = resolve_address(address)
        from ray_core._private import worker
        if not worker.is_initialized():
            rpc.set_auth_token(self.token)    # this process talks to that cluster only
        self.gcs = GcsClient(self.address)

    def run(self, coro, timeout: Optional[float]):
        """Run `coro` on the io loop within `timeout` seconds (a state call never hangs)."""
        timeout = config.state_api_timeout_s if timeout is None else timeout
        try:
            return rpc.run_sync(asyncio.wait_for(coro, timeout))
        except asyncio.TimeoutError:
            raise RayStateApiException(
                f"the cluster at {self.address} did not answer within {timeout:g} s "
                f"(timeout=...)") from None

    # ---- GCS tables -----------------------------------------------------------------
    async def nodes(self) -> List[NodeState]:
        infos = await self.gcs.get_all_node_info()
        return [NodeState(
            node_id=info.node_id.hex(), node_ip=info.node_manager_address,
            is_head_node=info.is_head_node,
            state=common_pb2.NodeInfo.NodeState.Name(info.state),
            state_message=info.death_reason or None, node_name=info.node_name,
            resources_total=dict(info.resources_total), labels=dict(info.labels),
            start_time_ms=info.start_time_ms or None, end_time_ms=info.end_time_ms or None,
            raylet_address=f"{info.node_manager_address}:{info.node_manager_port}")
            for info in infos]

    async def actors(self) -> List[ActorState]:
        rows = await self.gcs.get_all_actor_info()
        out = []
        for row in rows:
            strategy = row.task_spec.scheduling_strategy.placement_group_scheduling_strategy
            death = row.death_cause
            out.append(ActorState(
                actor_id=row.actor_id.hex(), class_name=row.class_name,
                state=_ACTOR_STATES.Name(row.state), job_id=row.job_id.hex(),
                name=row.name or None, node_id=_hex(row.address.node_id),
                pid=row.pid or None, ray_namespace=row.ray_namespace,
                required_resources=dict(row.required_resources),
                death_cause={"error_type": common_pb2.ErrorType.Name(death.error_type),
                             "error_message": death.error_message}
                if row.state == _ACTOR_STATES.Value("DEAD") else None,
                is_detached=row.is_detached,
                placement_group_id=_hex(strategy.placement_group_id),
                repr_name=row.class_name, num_restarts=row.num_restarts,
                max_restarts=row.max_restarts, address=_address(row.address)))
        return out

    async def workers(self) -> List[WorkerState]:
        """The GCS worker table (workers that ended, and those registered there), and the
        live workers and drivers each raylet has (the raylets own that list)."""
        rows, stats = await asyncio.gather(self.gcs.get_all_worker_info(), self.node_stats())
        out = {row.worker_id.hex(): WorkerState(
            worker_id=row.worker_id.hex(), is_alive=row.is_alive,
            worker_type=common_pb2.WorkerType.Name(row.worker_type),
            exit_type=None if row.is_alive else
            ("INTENDED_USER_EXIT" if row.exit_intended else "SYSTEM_ERROR"),
            node_id=row.worker_address.node_id.hex(), ip=row.worker_address.ip_address,
            pid=row.pid, exit_detail=row.exit_detail or None, job_id=_hex(row.job_id),
            start_time_ms=row.timestamp_ms if row.is_alive else None,
            end_time_ms=None if row.is_alive else row.timestamp_ms,
            address=_address(row.worker_address)) for row in rows}
        for node, reply in stats:
            if isinstance(reply, BaseException):
                continue
            for worker in reply.workers:
                if worker.worker_id.hex() in out:
                    continue
                out[worker.worker_id.hex()] = WorkerState(
                    worker_id=worker.worker_id.hex(), is_alive=True,
                    worker_type="DRIVER" if worker.is_driver else "WORKER", exit_type=None,
                    node_id=node.node_id, ip=worker.ip_address or node.node_ip,
                    pid=worker.pid, exit_detail=None,
                    address=f"{worker.ip_address}:{worker.port}" if worker.port else None)
        return list(out.values())

    async def jobs(self) -> List[JobState]:
        rows = await self.gcs.get_all_job_info()
        return [JobState(
            job_id=row.job_id.hex(), type="DRIVER",
            status="RUNNING" if row.state == gcs_service_pb2.JOB_RUNNING else "SUCCEEDED",
            entrypoint=row.entrypoint, start_time=row.start_time_ms or None,
            end_time=row.end_time_ms or None,
            driver_info={"id": row.driver_address.worker_id.hex() or None,
                         "node_ip_address": row.driver_address.ip_address,
                         "pid": str(row.driver_pid)},
            ray_namespace=row.ray_namespace,
            runtime_env={"env_vars": dict(row.runtime_env.env_vars)}) for row in rows]

    async def placement_groups(self) -> List[PlacementGroupState]:
        rows = await self.gcs.get_all_placement_group()
        return [PlacementGroupState(
            placement_group_id=row.placement_group_id.hex(), name=row.name,
            creator_job_id=row.creator_job_id.hex(), state=_PG_STATES[row.state],
            bundles=[{"bundle_id": f"{row.placement_group_id.hex()}_{i}",
                      "node_id": _hex(bundle.node_id),
                      "unit_resources": dict(bundle.unit_resources)}
                     for i, bundle in enumerate(row.bundles)],
            is_detached=row.is_detached,
            stats={"scheduling_state": _PG_STATES[row.state],
                   "scheduling_detail": row.scheduling_detail or None}) for row in rows]

    # ---- tasks (the GCS task table) -------------------------------------------------
    async def task_entries(self, **query) -> gcs_service_pb2.GetTaskEventsReply:
        return await self.gcs.get_task_events(**query)

    @staticmethod
    def task_row(entry: gcs_service_pb2.TaskInfoEntry) -> TaskState:
        times = dict(entry.state_times_us)
        events = [{"state": common_pb2.TaskStatus.Name(state), "created_ms": _ms(t)}
                  for state, t in sorted(times.items(), key=lambda kv: kv[1])]
        end = times.get(common_pb2.FINISHED) or times.get(common_pb2.FAILED)
        return TaskState(
            task_id=entry.task_id.hex(), attempt_number=entry.attempt_number,
            name=entry.name, state=common_pb2.TaskStatus.Name(entry.state),
            job_id=entry.job_id.hex(), actor_id=_hex(entry.actor_id),
            type=_TASK_TYPES.Name(entry.type), func_or_class_name=entry.func_or_class_name,
            parent_task_id=entry.parent_task_id.hex(), node_id=_hex(entry.node_id),
            worker_id=_hex(entry.worker_id), worker_pid=entry.worker_pid or None,
            error_type=entry.error_type or None, language="PYTHON",
            required_resources=dict(entry.required_resources),
            placement_group_id=_hex(entry.placement_group_id), events=events,
            creation_time_ms=_ms(times.get(common_pb2.PENDING_ARGS_AVAIL, 0)),
            start_time_ms=_ms(times.get(common_pb2.RUNNING, 0)), end_time_ms=_ms(end or 0),
            error_message=entry.error_message or None,
            owner_address=_address(entry.owner_address))

    async def tasks(self) -> Tuple[List[TaskState], int]:
        reply = await self.task_entries()
        return [self.task_row(e) for e in reply.tasks], reply.num_status_task_events_dropped

    # ---- what lives on the nodes ----------------------------------------------------
    async def node_stats(self, timeout: Optional[float] = None
                         ) -> List[Tuple[NodeState, object]]:
        """(node, its GetNodeStatsReply or the exception it raised) per alive node, each
        within `timeout` (default rpc_default_deadline_s)."""
        nodes = [n for n in await self.nodes() if n.state == "ALIVE"]
        replies = await asyncio.gather(*(self.raylet(n).GetNodeStats(
            node_manager_pb2.GetNodeStatsRequest(),
            timeout=timeout or config.rpc_default_deadline_s)
            for n in nodes), return_exceptions=True)
        return list(zip(nodes, replies))

    def raylet(self, node: NodeState):
        return rpc.stub(node_manager_pb2_grpc.NodeManagerServiceStub, node.raylet_address,
                        token=self.token)

    async def objects(self, timeout: Optional[float] = None) -> Tuple[List[dict], List[str]]:
        """Rows of every process's GetObjectsInfo, and what did not answer (each asked
        within `timeout`, default rpc_default_deadline_s)."""
        timeout = timeout or config.rpc_default_deadline_s
        warnings, targets = [], []
        for node, stats in await self.node_stats(timeout):
            if isinstance(stats, BaseException):
                warnings.append(f"node {node.node_id[:12]} did not answer: {stats}")
                continue
            targets += [(node, w) for w in stats.workers if w.port]
        replies = await asyncio.gather(*(rpc.stub(
            core_worker_pb2_grpc.CoreWorkerServiceStub, f"{w.ip_address}:{w.port}",
            token=self.token).GetObjectsInfo(core_worker_pb2.GetObjectsInfoRequest(),
                                             timeout=timeout)
            for _, w in targets), return_exceptions=True)
        rows = []
        for (node, w), reply in zip(targets, replies):
            if isinstance(reply, BaseException):
                continue        # exited since its raylet named it
            for row in json.loads(reply.rows_json):
                row["ip"] = node.node_ip
                row["address"] = f"{w.ip_address}:{w.port}"
                rows.append(row)
        return rows, warnings

    @staticmethod
    def object_row(row: dict, task_states: Dict[str, Tuple[str, int]]) -> ObjectState:
        reason = row["reasons"][0].split("(")[0]
        state, attempt = task_states.get(row["object_id"][:48], (None, 0))
        if state is None:
            state = {"pending": "PENDING_NODE_ASSIGNMENT", "error": "FAILED"}.get(
                row["where"], "FINISHED")
        return ObjectState(
            object_id=row["object_id"], object_size=row["size"], task_status=state,
            attempt_number=attempt, reference_type=_REFERENCE_TYPES.get(reason, reason),
            call_site="disabled", type=row["mode"].upper(), pid=row["pid"], ip=row["ip"],
            node_id=row["node_id"], owner_worker_id=row["owner_worker_id"] or None,
            where=row["where"], reference_reasons=row["reasons"])

    async def list_log_files(self, node: NodeState, glob_filter: str) -> List[Tuple[str, int]]:
        reply = await self.raylet(node).ListLogs(
            node_manager_pb2.ListLogsRequest(glob_filter=glob_filter),
            timeout=config.rpc_default_deadline_s)
        return list(zip(reply.log_files, reply.sizes))

    async def read_log(self, node: NodeState, filename: str, offset: int = 0,
                       tail_lines: int = 0) -> node_manager_pb2.GetLogReply:
        try:
            return await self.raylet(node).GetLog(
                node_manager_pb2.GetLogRequest(filename=filename, offset=offset,
                                               tail_lines=tail_lines),
                timeout=config.rpc_default_deadline_s)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise ValueError(e.details()) from None
            if e.code() == grpc.StatusCode.NOT_FOUND:
                raise FileNotFoundError(f"node {node.node_id}: {e.details()}") from None
            raise

    async def stacks(self, node: NodeState) -> node_manager_pb2.DumpStacksReply:
        return await self.raylet(node).DumpStacks(
            node_manager_pb2.DumpStacksRequest(),
            timeout=config.stack_dump_timeout_s + config.rpc_default_deadline_s)

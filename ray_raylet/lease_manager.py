"""The LeaseManager: worker lease requests from arrival to grant, spillback or failure.

Invariants:
- A lease holds its Allocation from grant until ReturnWorker (or its worker's death);
  a worker blocked in get() lends its CPU back until it wakes (NotifyWorkerBlocked).
- A request is in exactly one place: the ready queue (scheduled on every change: a
  return, a new node, a fresh resource view), the infeasible queue (re-examined when the
  cluster view changes; warned about once), or granting (resources taken, worker
  being popped). Its RPC reply is a future resolved exactly once.
- Dependencies named in a request are pulled into local plasma before resources are
  taken for it, so a lease never sits on CPUs waiting for the network.
- Every lease and request belongs to its owner: the worker or driver that asked for it
  (the task spec's caller). When that owner dies (owner_died, owner_node_died) its
  queued requests are canceled and its leased workers killed -- their tasks belonged to
  the dead owner, and nobody else would ever return them. Actor creation leases are the
  exception: the GCS asked for those, and ends (or keeps, if detached) the actor itself.
All methods run on the raylet's io loop.
"""
import asyncio
import logging
import time
from typing import Callable, Dict, List, Optional

from ray_common.config import config
from ray_common.metrics import LEASE_LATENCY
from ray_common.ids import UniqueID
from ray_common.protocol import common_pb2, node_manager_pb2
from ray_common import bundle_resources as bundle_names
from ray_raylet import resources as res
from ray_raylet.scheduling_policy import FAILED, INFEASIBLE, SchedulingPolicy
from ray_raylet.runtime_envs import RuntimeEnvSetupFailed
from ray_raylet.worker_pool import Worker, WorkerPool, WorkerStartError

logger = logging.getLogger(__name__)
Reply = node_manager_pb2.RequestWorkerLeaseReply


class LeaseRequest:
    __slots__ = ("lease_id", "spec", "demand", "strategy", "dependencies", "grant_or_reject",
                 "reply", "deps_state", "task_hex", "job_id", "canceled", "pull_task",
                 "owner_id", "owner_node", "start_failures", "backlog")

    def __init__(self, lease_id: bytes, request, demand: res.FixedSet):
        spec = request.resource_spec
        self.lease_id = lease_id
        self.spec = spec
        self.demand = demand
        self.strategy = spec.scheduling_strategy if spec.HasField("scheduling_strategy") else None
        self.dependencies = list(request.dependencies)
        self.grant_or_reject = request.grant_or_reject
        self.reply: asyncio.Future = asyncio.get_running_loop().create_future()
        self.deps_state = "pulling" if self.dependencies else "ready"
        self.task_hex = spec.task_id.hex() if spec.task_id else "-"
        self.job_id = spec.job_id
        self.canceled = False
        self.pull_task: Optional[asyncio.Task] = None
        self.start_failures = 0
        # Tasks of the same shape the owner queues behind this request (it asks for one
        # lease per shape at a time): demand the autoscaler and `status` must see.
        self.backlog = max(0, request.backlog_size - 1)
        if spec.type == common_pb2.ACTOR_CREATION_TASK:
            self.owner_id = self.owner_node = b""     # the GCS's: it ends the actor itself
        else:
            self.owner_id = spec.caller_address.worker_id
            self.owner_node = spec.caller_address.node_id

    def what(self) -> str:
        return f"task {self.task_hex} lease {self.lease_id.hex()}"


class Lease:
    __slots__ = ("lease_id", "worker", "allocation", "request", "blocked_cpu")

    def __init__(self, lease_id, worker, allocation, request):
        self.lease_id = lease_id
        self.worker = worker
        self.allocation = allocation
        self.request = request
        self.blocked_cpu = 0


class LeaseManager:
    def __init__(self, *, node_id: bytes, local: res.NodeResources, pool: WorkerPool,
                 pull_dependencies: Optional[Callable] = None,
                 warn_infeasible: Optional[Callable[[str, bytes], None]] = None,
                 gpu_ids: Optional[List[int]] = None):
        """`pull_dependencies(refs) -> awaitable` makes objects local;
        `warn_infeasible(message, job_id)` publishes the one warning per infeasible shape;
        `gpu_ids[i]` is the device id of GPU instance i (CUDA_VISIBLE_DEVICES order)."""
        self.node_id = node_id
        self.local = local
        self.pool = pool
        self.gpu_ids = gpu_ids
        self.policy = SchedulingPolicy(node_id)
        self._pull_dependencies = pull_dependencies
        self._warn_infeasible = warn_infeasible
        self.remote: Dict[bytes, res.NodeResources] = {}
        self.addresses: Dict[bytes, common_pb2.Address] = {}
        self.queue: List[LeaseRequest] = []
        self.infeasible: List[LeaseRequest] = []
        self.leases: Dict[bytes, Lease] = {}
        self.granting: Dict[bytes, LeaseRequest] = {}   # resources taken, worker being popped
        self._warned_shapes = set()
        self._removed_groups = set()   # hex ids of placement groups removed (never reused)
        # Owners known dead, so that a request of theirs still in flight (a spillback, a
        # grant waiting for its worker) is refused instead of leased to nobody. Bounded:
        # the oldest are forgotten first.
        self._dead_owners: Dict[bytes, None] = {}
        self._dead_nodes: Dict[bytes, None] = {}
        self._dispatch_scheduled = False
        self._loop = asyncio.get_running_loop()
        self.version = 0

    # ---- the RPCs ----------------------------------------------------------------

    async def request_lease(self, request) -> Reply:
        """Answer a lease request (see the module's invariants), timed for the lease
        latency metric: once per lease, not per task."""
        start = time.monotonic()
        reply = await self._request_lease(request)
        LEASE_LATENCY.labels(Reply.Status.Name(reply.status)).observe(time.monotonic() - start)
        return reply

    async def _request_lease(self, request) -> Reply:
        spec = request.resource_spec
        lease_id = request.lease_id or UniqueID.from_random().binary()
        try:
            demand = res.demand_set(dict(spec.required_resources))
        except ValueError as e:
            return Reply(status=Reply.FAILED, lease_id=lease_id,
                         failure_message=f"invalid resource request: {e}")
        req = LeaseRequest(lease_id, request, demand)
        if self._owner_dead(req):
            return Reply(status=Reply.CANCELED, lease_id=lease_id,
                         failure_message=f"its owner {req.owner_id.hex()} is dead")
        removed = self._removed_group_of(demand)
        if removed:
            return self._group_removed_reply(req, removed)
        logger.info("Worker lease request %s for task %s job %s resources %s%s",
                    lease_id.hex(), req.task_hex, spec.job_id.hex() or "-", res.describe(demand),
                    " (grant or reject)" if req.grant_or_reject else "")
        self.queue.append(req)
        if req.dependencies:
            req.pull_task = self._loop.create_task(self._pull_then_dispatch(req))
        self.schedule_dispatch()
        timeout = config.worker_lease_timeout_milliseconds
        try:
            if timeout > 0:
                return await asyncio.wait_for(asyncio.shield(req.reply), timeout / 1000.0)
            return await asyncio.shield(req.reply)
        except asyncio.TimeoutError:
            self.cancel(lease_id, f"not granted within worker_lease_timeout_milliseconds={timeout}")
            return await req.reply
        except asyncio.CancelledError:
            self._abandon(req)
            raise

    def return_worker(self, lease_id: bytes, worker_id: bytes, disconnect: bool,
                      reason: str = "") -> bool:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            logger.warning("ReturnWorker for unknown lease %s (worker %s): already returned or "
                           "its worker died", lease_id.hex(), worker_id.hex())
            return False
        self._release(lease)
        worker = lease.worker
        logger.info("Finished task %s, lease %s returned by worker %s pid %d%s",
                    lease.request.task_hex, lease_id.hex(), worker.hex, worker.pid,
                    f", disconnecting: {reason or 'asked by the owner'}" if disconnect else "")
        if disconnect:
            self.pool.kill(worker, reason or "its lease owner returned it with disconnect_worker")
        else:
            self.pool.push_worker(worker)
        self.schedule_dispatch()
        return True

    def cancel(self, lease_id: bytes, why: str = "canceled by its requester") -> bool:
        """Cancel a queued or infeasible request; a granted lease is not canceled (False)."""
        for queue in (self.queue, self.infeasible):
            for req in queue:
                if req.lease_id == lease_id:
                    queue.remove(req)
                    req.canceled = True
                    logger.info("Canceled lease request %s: %s", req.what(), why)
                    self._resolve(req, Reply(status=Reply.CANCELED, lease_id=lease_id,
                                             failure_message=why))
                    return True
        return False

    def worker_blocked(self, worker_id: bytes, blocked: bool) -> None:
        lease = self._lease_of(worker_id)
        if lease is None:
            return
        if blocked and not lease.blocked_cpu:
            lease.blocked_cpu = self.local.release_part(lease.allocation, "CPU")
            if lease.blocked_cpu:
                logger.info("Worker %s blocked in get: lent %s CPU (lease %s)", worker_id.hex(),
                            res.from_fixed(lease.blocked_cpu), lease.lease_id.hex())
                self.schedule_dispatch()
        elif not blocked and lease.blocked_cpu:
            self.local.acquire_forced("CPU", lease.blocked_cpu)
            lease.blocked_cpu = 0
            logger.info("Worker %s unblocked: took its CPU back (lease %s)", worker_id.hex(),
                        lease.lease_id.hex())

    def worker_died(self, worker: Worker) -> Optional[Lease]:
        """Free what a dead worker's lease held; returns that lease, if any."""
        lease = self._lease_of(worker.worker_id)
        if lease is None:
            return None
        self.leases.pop(lease.lease_id, None)
        self._release(lease)
        logger.warning("Lease %s of task %s failed: worker %s pid %d died (exit code %s)",
                       lease.lease_id.hex(), lease.request.task_hex, worker.hex, worker.pid,
                       worker.exit_code)
        self.schedule_dispatch()
        return lease

    def owner_died(self, owner_id: bytes, why: str) -> List[Lease]:
        """The leases a dead owner held (returned for the caller to kill their workers);
        its requests still waiting are canceled."""
        self._remember_dead(self._dead_owners, owner_id)
        return self._reclaim(lambda req: req.owner_id == owner_id, why)

    def owner_node_died(self, node_id: bytes, why: str) -> List[Lease]:
        """As owner_died, for every owner that lived on a dead node."""
        self._remember_dead(self._dead_nodes, node_id)
        return self._reclaim(lambda req: req.owner_node == node_id, why)

    def _owner_dead(self, req: LeaseRequest) -> bool:
        return bool(req.owner_id) and (req.owner_id in self._dead_owners or
                                       req.owner_node in self._dead_nodes)

    @staticmethod
    def _remember_dead(known: Dict[bytes, None], key: bytes) -> None:
        known[key] = None
        if len(known) > config.raylet_dead_owners_remembered:
            del known[next(iter(known))]

    def _reclaim(self, owned, why: str) -> List[Lease]:
        for queue in (self.queue, self.infeasible):
            for req in [r for r in queue if r.owner_id and owned(r)]:
                self.cancel(req.lease_id, why)
        leases = [lease for lease in self.leases.values()
                  if lease.request.owner_id and owned(lease.request)]
        for lease in leases:
            logger.warning("Reclaiming lease %s of task %s on worker %s pid %d: %s",
                           lease.lease_id.hex(), lease.request.task_hex, lease.worker.hex,
                           lease.worker.pid, why)
        return leases

    def leases_of_job(self, job_id: bytes) -> List[Lease]:
        return [lease for lease in self.leases.values() if lease.request.job_id == job_id]

    # ---- placement groups ----------------------------------------------------------

    def leases_in_group(self, group_hex: str) -> List[Lease]:
        return [lease for lease in self.leases.values()
                if any(bundle_names.group_of(name) == group_hex
                       for name in lease.allocation.amounts)]

    def group_removed(self, group_hex: str) -> None:
        """Requests waiting for the group's resources fail now; later ones at once."""
        self._removed_groups.add(group_hex)
        for queue in (self.queue, self.infeasible):
            for req in list(queue):
                removed = self._removed_group_of(req.demand)
                if removed:
                    queue.remove(req)
                    self._group_removed_reply(req, removed)

    def _removed_group_of(self, demand: res.FixedSet) -> Optional[str]:
        if self._removed_groups:
            for name in demand:
                group_hex = bundle_names.group_of(name)
                if group_hex and group_hex in self._removed_groups:
                    return group_hex
        return None

    def _group_removed_reply(self, req: LeaseRequest, group_hex: str) -> Reply:
        reply = Reply(status=Reply.FAILED, lease_id=req.lease_id, placement_group_removed=True,
                      failure_message=f"placement group {group_hex} was removed")
        logger.info("Lease request %s failed: its placement group %s was removed", req.what(),
                    group_hex)
        self._resolve(req, reply)
        return reply

    # ---- cluster view --------------------------------------------------------------

    def update_node(self, node_id: bytes, address: Optional[common_pb2.Address],
                    total: Dict[str, float], available: Dict[str, float]) -> None:
        """A remote node's resources as last reported (or as first registered)."""
        if node_id == self.node_id:
            return
        known = self.remote.get(node_id)
        if address is not None:
            self.addresses[node_id] = address
        if node_id not in self.addresses:
            return  # no address yet: cannot spill there
        self.remote[node_id] = res.NodeResources(total, available)
        if known is None:
            logger.info("Node %s joined the cluster view with %s", node_id.hex(),
                        res.describe(self.remote[node_id].total))
        if known is None or known.total != self.remote[node_id].total:
            self._retry_infeasible()   # joined, or gained resources (a placement group's)
        self.schedule_dispatch()

    def remove_node(self, node_id: bytes) -> None:
        if self.remote.pop(node_id, None) is not None:
            logger.info("Node %s left the cluster view", node_id.hex())
        self.addresses.pop(node_id, None)
        self.schedule_dispatch()

    def all_nodes(self) -> Dict[bytes, res.NodeResources]:
        nodes = dict(self.remote)
        nodes[self.node_id] = self.local
        return nodes

    def resource_load(self) -> List[common_pb2.ResourceDemand]:
        shapes: Dict[tuple, common_pb2.ResourceDemand] = {}
        for queue, infeasible in ((self.queue, False), (self.infeasible, True)):
            for req in queue:
                key = tuple(sorted(req.demand.items()))
                demand = shapes.get(key)
                if demand is None:
                    demand = shapes[key] = common_pb2.ResourceDemand(
                        shape=res.to_floats(req.demand))
                if infeasible:
                    demand.num_infeasible_requests_queued += 1
                else:
                    demand.num_ready_requests_queued += 1
                demand.backlog_size += req.backlog
        return list(shapes.values())

    # ---- dispatch ------------------------------------------------------------------

    def schedule_dispatch(self) -> None:
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self._loop.call_soon(self._dispatch)

    def local_resources_changed(self) -> None:
        """The node's own resources changed (a bundle came or went): look again at all."""
        self._retry_infeasible()
        self.schedule_dispatch()

    def _retry_infeasible(self) -> None:
        if self.infeasible:
            self.queue[:0] = self.infeasible
            self.infeasible.clear()

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        self.version += 1
        nodes = self.all_nodes()
        waiting = []
        for req in self.queue:
            decision = self.policy.schedule(nodes, req.demand, req.strategy,
                                            local_only=req.grant_or_reject)
            if decision.kind == FAILED:
                logger.warning("Lease request %s failed: %s", req.what(), decision.reason)
                self._resolve(req, Reply(status=Reply.FAILED, lease_id=req.lease_id,
                                         failure_message=decision.reason))
            elif decision.kind == INFEASIBLE:
                if req.grant_or_reject:
                    self._resolve(req, Reply(
                        status=Reply.REJECTED, lease_id=req.lease_id,
                        failure_message=f"node {self.node_id.hex()} cannot fit "
                                        f"{res.describe(req.demand)}"))
                else:
                    self._to_infeasible(req)
            elif decision.node_id != self.node_id:
                self._spill(req, decision.node_id)
            elif req.deps_state != "ready":
                waiting.append(req)
            else:
                allocation = self.local.allocate(req.demand)
                if allocation is None:
                    waiting.append(req)
                else:
                    self._loop.create_task(self._grant(req, allocation))
        self.queue = waiting

    def _spill(self, req: LeaseRequest, node_id: bytes) -> None:
        self.remote[node_id].subtract_estimate(req.demand)
        address = self.addresses[node_id]
        logger.info("Spilling back lease request %s to node %s at %s:%d", req.what(),
                    node_id.hex(), address.ip_address, address.port)
        self._resolve(req, Reply(status=Reply.SPILLBACK, lease_id=req.lease_id,
                                 retry_at_raylet_address=address))

    def _to_infeasible(self, req: LeaseRequest) -> None:
        self.infeasible.append(req)
        key = tuple(sorted(req.demand.items()))
        if key in self._warned_shapes or any(map(bundle_names.is_group_resource, req.demand)):
            return   # a placement group's task waits for its group, not for a node
        self._warned_shapes.add(key)
        message = (f"The lease request {req.lease_id.hex()} for task {req.task_hex} cannot be "
                   f"scheduled right now: requires {res.describe(req.demand)}, available on no "
                   f"node of the cluster. It waits until a node that fits joins.")
        logger.warning("%s", message)
        if self._warn_infeasible is not None:
            self._warn_infeasible(message, req.job_id)

    async def _pull_then_dispatch(self, req: LeaseRequest) -> None:
        try:
            if self._pull_dependencies is not None:
                await self._pull_dependencies(req.dependencies)
        except Exception:  # the worker will see the failure when it gets the argument
            logger.exception("Pulling the dependencies of %s failed", req.what())
        req.deps_state = "ready"
        self.schedule_dispatch()

    async def _grant(self, req: LeaseRequest, allocation: res.Allocation) -> None:
        env = {}
        gpus = [self._device_id(i) for i in self.local.devices(allocation)]
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        self.granting[req.lease_id] = req
        try:
            worker = await self.pool.pop_worker(req.job_id, env, req.spec.runtime_env)
        except RuntimeEnvSetupFailed as e:
            self.granting.pop(req.lease_id, None)
            self.local.release(allocation)
            logger.warning("Lease request %s: its runtime_env could not be set up: %s",
                           req.what(), e)
            self._resolve(req, Reply(status=Reply.FAILED, lease_id=req.lease_id,
                                     failure_message=str(e), runtime_env_setup_failed=True))
            self.schedule_dispatch()
            return
        except (WorkerStartError, OSError) as e:
            self.granting.pop(req.lease_id, None)
            self.local.release(allocation)
            req.start_failures += 1
            if req.start_failures < config.worker_start_attempts and not req.canceled \
                    and not req.reply.done():
                # A worker killed while it started (or one bad start): another may do.
                logger.warning("Lease request %s: worker start %d of %d failed (%s); trying "
                               "again", req.what(), req.start_failures,
                               config.worker_start_attempts, e)
                self.queue.append(req)
                self.schedule_dispatch()
                return
            logger.warning("Lease request %s failed: %s", req.what(), e)
            self._resolve(req, Reply(status=Reply.FAILED, lease_id=req.lease_id,
                                     failure_message=f"worker start failed: {e}"))
            self.schedule_dispatch()
            return
        self.granting.pop(req.lease_id, None)
        if req.canceled or req.reply.done() or self._owner_dead(req):
            self.local.release(allocation)
            self.pool.push_worker(worker)
            self.schedule_dispatch()
            return
        lease = Lease(req.lease_id, worker, allocation, req)
        self.leases[req.lease_id] = lease
        worker.lease_id = req.lease_id
        logger.info("Assigning task %s to worker with pid %d, worker id %s, lease %s, "
                    "resources %s", req.task_hex, worker.pid, worker.hex, req.lease_id.hex(),
                    res.describe(allocation.amounts))
        reply = Reply(status=Reply.GRANTED, lease_id=req.lease_id, worker_pid=worker.pid,
                      worker_address=common_pb2.Address(
                          node_id=self.node_id, ip_address=worker.ip_address,
                          port=worker.port, worker_id=worker.worker_id))
        for name, ids, quantities in allocation.to_proto_fields():
            if ids:
                ids = [self._device_id(i) for i in self.local.backing(name, ids)]
            reply.resource_mapping.add(name=name, instance_ids=ids, quantities=quantities)
        self._resolve(req, reply)

    # ---- explaining -----------------------------------------------------------------

    def explain(self, lease_id: bytes) -> str:
        """Where a lease request stands, in words (for hang reports: why a task waits)."""
        lease = self.leases.get(lease_id)
        if lease is not None:
            return f"granted: worker pid {lease.worker.pid} runs it"
        req = self.granting.get(lease_id)
        if req is not None:
            return (f"its resources are reserved and a worker process is starting for it "
                    f"on node {self.node_id.hex()[:12]}")
        for req in self.infeasible:
            if req.lease_id == lease_id:
                return (f"infeasible: it needs {res.describe(req.demand)}, which no node of "
                        f"the cluster has; it waits until a node that fits joins")
        for req in self.queue:
            if req.lease_id == lease_id:
                return self._explain_queued(req)
        return "not known to this raylet (granted and returned, or not received yet)"

    def _explain_queued(self, req: LeaseRequest) -> str:
        if req.deps_state != "ready":
            return (f"its {len(req.dependencies)} argument object(s) are being pulled to "
                    f"node {self.node_id.hex()[:12]}")
        names = set(req.demand)
        nodes = self.all_nodes()
        free = "; ".join(
            f"node {node_id.hex()[:12]} has "
            + res.describe({n: node.available.get(n, 0) for n in names}) + " free of "
            + res.describe({n: node.total.get(n, 0) for n in names})
            for node_id, node in nodes.items())
        fits = [node_id for node_id, node in nodes.items() if node.is_feasible(req.demand)]
        if not fits:
            return (f"infeasible: it needs {res.describe(req.demand)}, which no node of the "
                    f"cluster has ({free})")
        return (f"waiting for resources: it needs {res.describe(req.demand)}, busy on every "
                f"node that has it ({free})")

    # ---- helpers -------------------------------------------------------------------

    def _resolve(self, req: LeaseRequest, reply: Reply) -> None:
        if not req.reply.done():
            req.reply.set_result(reply)
        if req.pull_task is not None and not req.pull_task.done():
            req.pull_task.cancel()  # spilled, failed or canceled: its arguments are not needed here

    def _abandon(self, req: LeaseRequest) -> None:
        """The requester went away (its RPC was cancelled): undo whatever was given."""
        if self.cancel(req.lease_id, "the requester disconnected"):
            return
        req.canceled = True
        lease = self.leases.get(req.lease_id)
        if lease is not None and req.reply.done():
            logger.info("Requester of lease %s went away after the grant; taking the "
                        "worker back", req.lease_id.hex())
            self.return_worker(req.lease_id, lease.worker.worker_id, False)

    def _release(self, lease: Lease) -> None:
        if lease.blocked_cpu:
            # The CPU was lent out while blocked: take it back before returning everything.
            self.local.acquire_forced("CPU", lease.blocked_cpu)
            lease.blocked_cpu = 0
        self.local.release(lease.allocation)
        lease.worker.lease_id = None

    def _device_id(self, instance: int) -> int:
        return self.gpu_ids[instance] if self.gpu_ids and instance < len(self.gpu_ids) else instance

    def _lease_of(self, worker_id: bytes) -> Optional[Lease]:
        for lease in self.leases.values():
            if lease.worker.worker_id == worker_id:
                return lease
        return None

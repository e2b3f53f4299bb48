"""get_runtime_context(): what the running code is part of (job, task, actor, node, worker).

Ray's RuntimeContext, getter for getter: the get_*() methods answer in hex strings (None
where the process has no such thing: a driver runs no task and hosts no actor), the
older properties in ID objects. What a task is comes from the spec of the call running
in this thread or, in an async actor, in this asyncio task (CoreWorker.current_spec).
"""
import json
import logging
import os
from typing import Dict, List, Optional

from ray_common.ids import NodeID, PlacementGroupID, TaskID
from ray_common.protocol import common_pb2

from ray_core._private import runtime_env
from ray_core.runtime_env import RuntimeEnv

logger = logging.getLogger(__name__)


def task_name(spec) -> str:
    """The name Ray shows for a task: its `name` option, else its function's qualified
    name (Class.method for actor calls)."""
    fd = spec.function_descriptor
    if spec.type == common_pb2.ACTOR_CREATION_TASK:
        return f"{fd.class_name}.__init__"   # spec.name is the actor's name there
    if spec.name:
        return spec.name
    return f"{fd.class_name}.{fd.function_name}" if fd.class_name else fd.function_name


class RuntimeContext:
    def __init__(self, worker):
        self._worker = worker

    @property
    def _core(self):
        return self._worker.core_worker

    def _in_worker(self, what: str) -> bool:
        if self._worker.mode == "driver":
            logger.debug("%s is only available in a task or actor, not in a driver", what)
            return False
        return True

    def _spec(self):
        return self._core.current_spec() if self._worker.mode != "driver" else None

    # ---- ids --------------------------------------------------------------------------
    def get_job_id(self) -> str:
        return self._core.current_job_id.hex()

    def get_node_id(self) -> str:
        return self._core.node_id.hex()

    def get_worker_id(self) -> str:
        return self._core.worker_id.hex()

    def get_task_id(self) -> Optional[str]:
        """The running task's id (hex); None in the driver, outside any task."""
        spec = self._spec()
        return spec.task_id.hex() if spec is not None else None

    def get_task_name(self) -> Optional[str]:
        """The running task's name: its `name` option, else the function's qualified
        name; None in the driver."""
        spec = self._spec()
        return task_name(spec) if spec is not None else None

    def get_task_function_name(self) -> Optional[str]:
        """module.qualified_name of the running function (module.Class.method in an
        actor); None in the driver."""
        spec = self._spec()
        if spec is None:
            return None
        fd = spec.function_descriptor
        module = fd.module_name
        actor = self._core.actor_runtime
        if not module and actor is not None:
            module = type(actor.instance).__module__
        qualname = (f"{fd.class_name}.{fd.function_name}" if fd.class_name
                    else fd.function_name)
        return f"{module}.{qualname}" if module else qualname

    def get_actor_id(self) -> Optional[str]:
        actor = self._actor()
        return None if actor is None else actor.actor_id.hex()

    def get_actor_name(self) -> Optional[str]:
        """The actor's name ("" if it has none); None outside an actor."""
        actor = self._actor()
        return None if actor is None else actor.name

    def _actor(self):
        return self._core.actor_runtime if self._in_worker("the actor") else None

    def get_placement_group_id(self) -> Optional[str]:
        """The placement group (hex id) the running task or actor was placed in, if any."""
        group_id = self._core.current_placement_group()[0]
        return group_id.hex() if group_id else None

    # ---- what it holds ----------------------------------------------------------------
    def get_assigned_resources(self) -> Dict[str, float]:
        return self._core.assigned_resources()

    def get_accelerator_ids(self) -> Dict[str, List[str]]:
        """Accelerator ids assigned to the running task or actor, by resource name (as in
        Ray the ids are strings; GPUs are the one accelerator nodes detect here)."""
        gpus = self._core.assigned_gpus()
        return {"GPU": [str(index) for index, _ in gpus]}

    def get_resource_ids(self) -> Dict[str, List[str]]:
        """Ray's older name of get_accelerator_ids()."""
        return self.get_accelerator_ids()

    def get_runtime_env_string(self) -> str:
        return json.dumps(self.runtime_env)

    @property
    def runtime_env(self) -> RuntimeEnv:
        """The runtime_env of the running task or actor (the job's in a driver)."""
        return RuntimeEnv(_validate=False, **runtime_env.to_dict(self._core.inherited_env))

    def get_node_labels(self) -> Dict[str, str]:
        for info in self._core.gcs.sync.get_all_node_info():
            if info.node_id == self._core.node_id:
                return dict(info.labels)
        return {}

    def get_temp_dir(self) -> str:
        return os.path.dirname(os.path.realpath(self._core.session_dir))

    def get_session_name(self) -> str:
        return os.path.basename(os.path.realpath(self._core.session_dir))

    def is_canceled(self) -> bool:
        """Whether ray_core.cancel() was called on the running task (for tasks that
        catch TaskCancelledError to clean up)."""
        if self._worker.mode == "driver":
            raise RuntimeError("is_canceled() is only available in a task, not a driver")
        actor = self._core.actor_runtime
        if actor is not None and actor.is_asyncio:
            raise RuntimeError("is_canceled() is not supported in an async actor")
        spec = self._spec()
        return spec is not None and self._core.executor.was_cancelled(spec.task_id)

    # ---- the actor --------------------------------------------------------------------
    @property
    def current_actor(self):
        """The handle of the actor this code runs in."""
        actor = self._core.actor_runtime
        if actor is None:
            raise RuntimeError("current_actor is only available inside an actor")
        return actor.handle()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor was restarted (this is not its first incarnation)."""
        actor = self._core.actor_runtime
        if actor is None:
            raise RuntimeError("was_current_actor_reconstructed is only available inside "
                               "an actor")
        return actor.num_restarts > 0

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        return self._core.current_placement_group()[1]

    # ---- Ray's older properties (ID objects) --------------------------------------------
    @property
    def job_id(self):
        return self._core.current_job_id

    @property
    def task_id(self):
        spec = self._spec()
        return None if spec is None else TaskID(spec.task_id)

    @property
    def actor_id(self):
        actor = self._actor()
        return None if actor is None else actor.actor_id

    @property
    def current_placement_group_id(self):
        group_id = self._core.current_placement_group()[0]
        return PlacementGroupID(group_id) if group_id else PlacementGroupID.nil()

    @property
    def node_id(self):
        return NodeID(self._core.node_id)

    @property
    def worker_id(self):
        return self._core.worker_id

    @property
    def namespace(self) -> str:
        return self._worker.namespace

    @property
    def gcs_address(self) -> str:
        return self._core.gcs_address

    def get(self) -> dict:
        context = {"job_id": self.job_id, "node_id": self.node_id, "namespace": self.namespace}
        if self._worker.mode != "driver":
            if self.task_id is not None:
                context["task_id"] = self.task_id
            if self.actor_id is not None:
                context["actor_id"] = self.actor_id
        return context


def get_runtime_context() -> RuntimeContext:
    """What the running driver, task or actor is part of."""
    from ray_core._private import worker
    return RuntimeContext(worker.global_worker())

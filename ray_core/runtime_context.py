"""get_runtime_context(): what the running code is part of (job, task, node, worker)."""
from typing import Dict, List, Optional


class RuntimeContext:
    def __init__(self, worker):
        self._worker = worker

    @property
    def _core(self):
        return self._worker.core_worker

    def get_job_id(self) -> str:
        return self._core.current_job_id.hex()

    def get_task_id(self) -> Optional[str]:
        """The running task's id (hex); None in the driver, outside any task."""
        if self._worker.mode == "driver":
            return None
        return self._core.current_task_id.hex()

    def get_node_id(self) -> str:
        return self._core.node_id.hex()

    def get_worker_id(self) -> str:
        return self._core.worker_id.hex()

    def get_actor_id(self) -> Optional[str]:
        actor = self._core.actor_runtime
        return None if actor is None else actor.actor_id.hex()

    def get_placement_group_id(self) -> Optional[str]:
        """The placement group (hex id) the running task or actor was placed in, if any."""
        group_id = self._core.current_placement_group()[0]
        return group_id.hex() if group_id else None

    def get_actor_name(self) -> Optional[str]:
        actor = self._core.actor_runtime
        return None if actor is None else (actor.name or None)

    @property
    def current_actor(self):
        """The handle of the actor this code runs in."""
        actor = self._core.actor_runtime
        if actor is None:
            raise RuntimeError("current_actor is only available inside an actor")
        return actor.handle()

    def get_assigned_resources(self) -> Dict[str, float]:
        return self._core.assigned_resources()

    def get_accelerator_ids(self) -> Dict[str, List[str]]:
        """Accelerator ids assigned to the running task or actor, by resource name (as in
        Ray the ids are strings; GPUs are the one accelerator nodes detect here)."""
        gpus = self._core.assigned_gpus()
        return {"GPU": [str(index) for index, _ in gpus]}

    def get_runtime_env_string(self) -> str:
        import json
        return json.dumps(self._core.job_runtime_env or {})

    @property
    def job_id(self):
        return self._core.current_job_id

    @property
    def task_id(self):
        return None if self._worker.mode == "driver" else self._core.current_task_id

    @property
    def node_id(self):
        from ray_common.ids import NodeID
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

    @property
    def was_current_actor_reconstructed(self) -> bool:
        actor = self._core.actor_runtime
        return actor is not None and actor.num_restarts > 0

    def get(self) -> dict:
        return {"job_id": self.job_id, "node_id": self.node_id, "namespace": self.namespace,
                "task_id": self.task_id}

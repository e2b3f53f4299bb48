"""Nodes as processes of this machine, started the way `ray_core start --address` and
cluster_utils.Cluster start them (one raylet, store and log monitor each), sharing the
head's temp and session folders: `grep <task_id>` sees their logs, and `ray_core stop`
stops them with the head."""
import subprocess

from ray_core.autoscaler.cluster_config import NodeType
from ray_core.autoscaler.node_provider import NodeLaunchError, NodeProvider
from ray_core.node import Node, stop_record


class LocalNodeProvider(NodeProvider):
    def create_node(self, launch_id: str, node_type: NodeType) -> None:
        for command in self.cluster.setup_commands + self.cluster.worker_setup_commands:
            done = subprocess.run(command, shell=True, capture_output=True, text=True)
            if done.returncode:
                raise NodeLaunchError(f"setup command {command!r} exited with "
                                      f"{done.returncode}: {done.stderr.strip()[-500:]}")
        self._remember(launch_id, {"node_type": node_type.name, "record": ""})
        try:
            node = Node.start_worker(self.gcs_address, self.temp_dir,
                                     session_dir=self.session_dir, token=self.token,
                                     detached=True, labels=self.labels(launch_id, node_type),
                                     **node_type.start_arguments())
        except (RuntimeError, TimeoutError, OSError, ConnectionError, ValueError) as e:
            self._remember(launch_id, None)
            raise NodeLaunchError(str(e)) from None
        self._remember(launch_id, {"node_type": node_type.name, "record": node.record_path,
                                   "node_id": node.node_id})

    def terminate_node(self, launch_id: str) -> None:
        record = self._entry(launch_id).get("record")
        if record:
            stop_record(record)
        self._remember(launch_id, None)

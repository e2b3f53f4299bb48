"""What the autoscaler asks of a place that runs nodes: create one of a type, end one,
list the ones it made.

Each node is known by a launch id the autoscaler picks; the node carries it as a label
(LAUNCH_ID_LABEL), which is how a registered ray_core node is matched to the provider's
node. Providers write what they launched to a file in the session folder, so a restarted
autoscaler and `ray_core down` (another process) find every node.
"""
import json
import logging
import os
import threading
from typing import Dict, Optional

from ray_common.process import write_file_atomically

from ray_core.autoscaler.cluster_config import ClusterConfig, NodeType

logger = logging.getLogger(__name__)

LAUNCH_ID_LABEL = "ray_core.io/launch-id"
NODE_TYPE_LABEL = "ray_core.io/node-type"


class NodeLaunchError(RuntimeError):
    """A node could not be started; the message says what the provider saw."""


class NodeProvider:
    def __init__(self, cluster: ClusterConfig, gcs_address: str, session_dir: str,
                 temp_dir: str, token: Optional[str]):
        self.cluster = cluster
        self.gcs_address = gcs_address
        self.session_dir = session_dir
        self.temp_dir = temp_dir
        self.token = token
        self._state_path = os.path.join(session_dir, "autoscaler",
                                        f"{cluster.cluster_name}_nodes.json")
        self._lock = threading.Lock()   # launches run on threads of their own

    # -- what each provider does -------------------------------------------------------
    def create_node(self, launch_id: str, node_type: NodeType) -> None:
        """Start a node of `node_type` labelled with `launch_id`; blocking; raises
        NodeLaunchError."""
        raise NotImplementedError

    def terminate_node(self, launch_id: str) -> None:
        raise NotImplementedError

    # -- the nodes it made -------------------------------------------------------------
    def non_terminated_nodes(self) -> Dict[str, str]:
        """launch id -> node type of every node created and not terminated."""
        return {launch_id: entry["node_type"] for launch_id, entry in self._read().items()}

    def labels(self, launch_id: str, node_type: NodeType) -> Dict[str, str]:
        return {**node_type.labels, LAUNCH_ID_LABEL: launch_id,
                NODE_TYPE_LABEL: node_type.name}

    def _read(self) -> Dict[str, dict]:
        try:
            with open(self._state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _remember(self, launch_id: str, entry: Optional[dict]) -> None:
        with self._lock:
            nodes = self._read()
            if entry is None:
                nodes.pop(launch_id, None)
            else:
                nodes[launch_id] = entry
            os.makedirs(os.path.dirname(self._state_path), exist_ok=True)
            write_file_atomically(self._state_path, json.dumps(nodes))

    def _entry(self, launch_id: str) -> dict:
        return self._read().get(launch_id, {})


def end_launched_nodes(provider: NodeProvider) -> int:
    """End every node `provider` launched (its autoscaler stopped first, or it would
    launch them again); returns how many. One that fails to end is logged, the rest go
    on."""
    ended = 0
    for launch_id in provider.non_terminated_nodes():
        try:
            provider.terminate_node(launch_id)
            ended += 1
        except Exception as e:  # noqa: BLE001 - end the rest
            logger.warning("Ending the node of launch %s failed: %s", launch_id, e)
    return ended


def make_provider(cluster: ClusterConfig, gcs_address: str, session_dir: str,
                  temp_dir: str, token: Optional[str]) -> NodeProvider:
    kind = cluster.provider["type"]
    if kind == "local":
        from ray_core.autoscaler.local_provider import LocalNodeProvider
        return LocalNodeProvider(cluster, gcs_address, session_dir, temp_dir, token)
    from ray_core.autoscaler.command_provider import CommandNodeProvider
    return CommandNodeProvider(cluster, gcs_address, session_dir, temp_dir, token)

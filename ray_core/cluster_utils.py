"""A multi-node cluster on one machine, for tests and for trying multi-node logic on a
laptop (the interface of Ray's `ray.cluster_utils.Cluster`).

Each node is a ray_core.node.Node started by the same path as init() and `ray_core
start`: the head runs the GCS, every node its own raylet, plasma store and workers. All
nodes share the head's session folder (so `grep <task_id> logs/*` sees them all) and die
with the process that made the Cluster.
"""
import time
from typing import Any, Dict, List, Optional

from ray_common.config import config

from ray_core.node import Node, check_gcs


class Cluster:
    def __init__(self, initialize_head: bool = False, connect: bool = False,
                 head_node_args: Optional[Dict[str, Any]] = None,
                 shutdown_at_exit: bool = True, temp_dir: Optional[str] = None):
        self.head_node: Optional[Node] = None
        self.worker_nodes: List[Node] = []
        self._temp_dir = temp_dir
        self.connected = False
        if shutdown_at_exit:
            import atexit
            atexit.register(self.shutdown)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()
        elif connect:
            raise ValueError("Cluster(connect=True) needs initialize_head=True: there is "
                             "no head to connect to")

    @property
    def address(self) -> str:
        """The GCS address, as init(address=...) and `ray_core start --address` take it."""
        if self.head_node is None:
            raise RuntimeError("the cluster has no head node yet: call add_node() first")
        return self.head_node.gcs_address

    @property
    def gcs_address(self) -> str:
        return self.address

    def _node_temp_dir(self, node_args: Dict[str, Any]) -> str:
        temp_dir = node_args.pop("_temp_dir", None) or node_args.pop("temp_dir", None)
        if self._temp_dir is None:
            self._temp_dir = temp_dir or config.temp_dir
        return self._temp_dir

    def add_node(self, wait: bool = True, **node_args) -> Node:
        """Start a node (the first one is the head) with num_cpus, num_gpus, resources,
        object_store_memory, node_ip_address; returns it once registered."""
        args = dict(node_args)
        temp_dir = self._node_temp_dir(args)
        args.pop("node_name", None)
        node_ip = args.pop("node_ip_address", None) or "127.0.0.1"
        allowed = {"num_cpus", "num_gpus", "resources", "object_store_memory", "labels"}
        if self.head_node is None:
            # The head's GCS storage ("memory" or "redis") and its dashboard.
            allowed |= {"storage", "include_dashboard", "dashboard_host", "dashboard_port"}
        unknown = set(args) - allowed
        if unknown:
            raise ValueError(f"Cluster.add_node: unsupported argument(s) {sorted(unknown)}; "
                             f"it takes {sorted(allowed | {'node_ip_address', '_temp_dir'})}")
        if self.head_node is None:
            node = Node.start_head(temp_dir, node_ip=node_ip, **args)
            self.head_node = node
        else:
            node = Node.start_worker(self.address, temp_dir, node_ip=node_ip,
                                     session_dir=self.head_node.session_dir,
                                     token=self.head_node.token, **args)
            self.worker_nodes.append(node)
        if wait:
            self.wait_for_nodes()
        return node

    def remove_node(self, node: Node, allow_graceful: bool = True) -> None:
        """Stop a node's processes (SIGTERM, or SIGKILL when not graceful)."""
        if node is self.head_node:
            for other in list(self.worker_nodes):
                self.remove_node(other, allow_graceful)
            node.kill(force=not allow_graceful)
            self.head_node = None
            return
        if node not in self.worker_nodes:
            raise ValueError(f"node {node.node_id} is not part of this cluster")
        node.kill(force=not allow_graceful)
        self.worker_nodes.remove(node)

    def list_all_nodes(self) -> List[Node]:
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Wait until the GCS lists exactly this cluster's nodes as alive."""
        if self.head_node is None:
            return
        expected = {bytes.fromhex(n.node_id) for n in self.list_all_nodes()}
        deadline = time.monotonic() + timeout
        while True:
            alive = {n.node_id for n in check_gcs(self.address, token=self.head_node.token)
                     if n.state == n.ALIVE}
            if alive == expected:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the GCS lists {len(alive)} alive node(s) after "
                                   f"{timeout}s; this cluster has {len(expected)}")
            time.sleep(config.raylet_report_resources_period_milliseconds / 1000.0)

    def connect(self, namespace: Optional[str] = None, **init_kwargs):
        """init() this process as a driver of the cluster."""
        import ray_core
        context = ray_core.init(address=self.address, namespace=namespace,
                                _temp_dir=self._temp_dir, **init_kwargs)
        self.connected = True
        return context

    def shutdown(self) -> None:
        """Disconnect the driver (if connect() made one) and stop every node."""
        if self.connected:
            import ray_core
            ray_core.shutdown()
            self.connected = False
        if self.head_node is not None:
            self.remove_node(self.head_node)
        for node in list(self.worker_nodes):
            self.remove_node(node)


class AutoscalingCluster:
    """A head whose autoscaler launches nodes of `worker_node_types` as local processes
    (Ray's ray.cluster_utils.AutoscalingCluster): for trying autoscaling on one machine.

        cluster = AutoscalingCluster(head_resources={"CPU": 1}, worker_node_types={
            "big": {"resources": {"CPU": 1, "big": 1}, "min_workers": 0, "max_workers": 2}},
            idle_timeout_minutes=0.2)
        cluster.start()
        ray_core.init(address=cluster.address)
        ...
        cluster.shutdown()

    Extra keyword arguments are cluster file keys (max_workers, upscaling_speed,
    idle_timeout_minutes). The head and its autoscaler die with this process.
    """

    def __init__(self, head_resources: Dict[str, float],
                 worker_node_types: Dict[str, Dict[str, Any]], **config_kwargs):
        from ray_core.autoscaler.cluster_config import parse
        types = {"head": {"resources": dict(head_resources)}}
        for name, spec in worker_node_types.items():
            types[name] = {k: v for k, v in spec.items() if k != "node_config"}
        self.config = {"cluster_name": "autoscaling-cluster", "provider": {"type": "local"},
                       "head_node_type": "head", "available_node_types": types,
                       "max_workers": sum(t.get("max_workers", 0)
                                          for t in worker_node_types.values()),
                       **config_kwargs}
        parse(self.config)      # a bad argument fails here, not in the autoscaler
        self.head_node: Optional[Node] = None
        self._config_dir: Optional[str] = None

    @property
    def address(self) -> str:
        if self.head_node is None:
            raise RuntimeError("the cluster is not started: call start() first")
        return self.head_node.gcs_address

    def start(self, temp_dir: Optional[str] = None) -> None:
        import json
        import tempfile

        from ray_core.autoscaler.cluster_config import NodeType
        self._config_dir = tempfile.mkdtemp(prefix="rc_autoscaling_")
        path = f"{self._config_dir}/cluster.yaml"
        with open(path, "w") as f:
            json.dump(self.config, f)       # JSON is YAML
        head = self.config["available_node_types"]["head"]
        self.head_node = Node.start_head(temp_dir or config.temp_dir, autoscaling_config=path,
                                         **NodeType("head", head["resources"]).start_arguments())

    def shutdown(self) -> None:
        """The autoscaler, every node it launched, then the head."""
        import shutil

        from ray_core.autoscaler.cluster_config import parse
        from ray_core.autoscaler.node_provider import end_launched_nodes, make_provider
        if self.head_node is None:
            return
        node, self.head_node = self.head_node, None
        node.stop_autoscaler()
        end_launched_nodes(make_provider(parse(self.config), node.gcs_address,
                                         node.session_dir, node.temp_dir, node.token))
        node.kill()
        shutil.rmtree(self._config_dir, ignore_errors=True)

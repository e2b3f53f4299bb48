"""Nodes started and ended by shell lines from the cluster file: an `ssh` line for
machines an operator already has, or a cloud CLI call.

    provider:
      type: command
      worker_ips: [10.0.0.2, 10.0.0.3]      # optional: one node per address
      start_command: ssh {ip} ray_core start --address {head_address} {node_args}
      stop_command: ssh {ip} ray_core stop
      command_timeout_s: 300

Fields the lines may use: {head_address}, {node_args} (the type's --num-cpus,
--num-gpus, --resources, --object-store-memory and --labels, shell-quoted),
{launch_id} (8 hex digits, unique per node), {node_type}, {ip} (with worker_ips),
{auth_token}. The lines run with RAY_CORE_AUTH_TOKEN, RAY_CORE_ADDRESS and
RAY_CORE_LAUNCH_ID in their environment: a local `ray_core start` takes the token from
there, an ssh line passes it on (`--auth-token {auth_token}`), out of the process list of
this machine's other users only if the line reads it from the environment. A start line
must return once the node runs (as `ray_core start` does); the node registers with the
launch id label, which is how the autoscaler finds it.
"""
import json
import os
import shlex
import subprocess
from typing import Dict

from ray_core.autoscaler.cluster_config import NodeType
from ray_core.autoscaler.node_provider import NodeLaunchError, NodeProvider


class CommandNodeProvider(NodeProvider):
    def create_node(self, launch_id: str, node_type: NodeType) -> None:
        ip = self._free_ip()
        self._remember(launch_id, {"node_type": node_type.name, "ip": ip})
        fields = self._fields(launch_id, node_type.name, ip)
        fields["node_args"] = self._node_args(launch_id, node_type)
        try:
            for command in self.cluster.setup_commands + self.cluster.worker_setup_commands:
                self._run(command, fields, "setup command")
            self._run(self.cluster.provider["start_command"], fields, "start_command")
        except NodeLaunchError:
            self._remember(launch_id, None)
            raise

    def terminate_node(self, launch_id: str) -> None:
        entry = self._entry(launch_id)
        fields = self._fields(launch_id, entry.get("node_type", ""), entry.get("ip", ""))
        try:
            self._run(self.cluster.provider["stop_command"], fields, "stop_command")
        finally:
            self._remember(launch_id, None)

    def _free_ip(self) -> str:
        ips = self.cluster.provider.get("worker_ips") or []
        if not ips:
            return ""
        used = {entry.get("ip") for entry in self._read().values()}
        free = [ip for ip in ips if ip not in used]
        if not free:
            raise NodeLaunchError(f"every address in provider.worker_ips ({len(ips)}) "
                                  f"already runs a node")
        return free[0]

    def _fields(self, launch_id: str, node_type: str, ip: str) -> Dict[str, str]:
        return {"head_address": self.gcs_address, "launch_id": launch_id,
                "node_type": node_type, "ip": ip, "auth_token": self.token or "",
                "node_args": ""}

    def _node_args(self, launch_id: str, node_type: NodeType) -> str:
        start = node_type.start_arguments()
        args = ["--num-cpus", str(start["num_cpus"]), "--num-gpus", str(start["num_gpus"]),
                "--labels", json.dumps(self.labels(launch_id, node_type))]
        if start["resources"]:
            args += ["--resources", json.dumps(start["resources"])]
        if start["object_store_memory"]:
            args += ["--object-store-memory", str(start["object_store_memory"])]
        if not self.token:
            args.append("--disable-auth")
        return " ".join(shlex.quote(a) for a in args)

    def _run(self, template: str, fields: Dict[str, str], what: str) -> None:
        try:
            command = template.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise NodeLaunchError(f"provider {what} {template!r} names an unknown field "
                                  f"{e}; it may use {sorted(fields)}") from None
        env = dict(os.environ, RAY_CORE_AUTH_TOKEN=fields["auth_token"],
                   RAY_CORE_ADDRESS=fields["head_address"], RAY_CORE_LAUNCH_ID=fields["launch_id"])
        timeout = self.cluster.provider.get("command_timeout_s", 300)
        try:
            done = subprocess.run(command, shell=True, capture_output=True, text=True,
                                  env=env, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise NodeLaunchError(f"{what} did not return within {timeout}s: {command}") \
                from None
        if done.returncode:
            raise NodeLaunchError(f"{what} exited with {done.returncode}: {command}: "
                                  f"{(done.stderr or done.stdout).strip()[-500:]}")

"""What this machine offers: CPUs, GPUs, memory, and the node's total resource map.

GPUs come from CUDA_VISIBLE_DEVICES when it is set (its entries, in order, are the device
ids leases hand out), else from `nvidia-smi -L`; a machine without either has none.
"""
import json
import os
import shutil
import subprocess
from typing import Dict, List, Optional

import psutil

from ray_common.config import config
from ray_raylet.resources import HEAD_NODE_RESOURCE, NODE_RESOURCE_PREFIX, fixed_set

_NVIDIA_SMI_TIMEOUT_S = 10  # only at raylet start; a hung driver must not hang the node


def detect_gpu_ids() -> List[int]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for entry in visible.split(","):
            entry = entry.strip()
            if entry.isdigit():
                ids.append(int(entry))
            elif entry:
                break  # "-1", "NoDevFiles" or a UUID list: no usable numeric ids past here
        return ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True,
                             timeout=_NVIDIA_SMI_TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return list(range(sum(1 for line in out.splitlines() if line.startswith("GPU "))))


def default_object_store_memory() -> int:
    configured = config.object_store_memory
    if configured > 0:
        return configured
    return int(psutil.virtual_memory().total * 0.3)


def total_resources(node_ip: str, num_cpus: Optional[float], num_gpus: Optional[float],
                    custom_json: Optional[str], object_store_memory: int,
                    gpu_ids: List[int], head: bool = False) -> Dict[str, float]:
    """The node's total resource map, as registered with the GCS."""
    custom = {}
    if custom_json:
        try:
            custom = json.loads(custom_json)
        except ValueError as e:
            raise ValueError(f"--resources must be a JSON object of name -> amount: {e}") from None
        if not isinstance(custom, dict):
            raise ValueError(f"--resources must be a JSON object of name -> amount, got "
                             f"{custom_json!r}")
        for name in ("CPU", "GPU", "memory", "object_store_memory"):
            if name in custom:
                raise ValueError(f"--resources must not set {name}; use its own flag")
    total = {
        "CPU": float(num_cpus if num_cpus is not None else os.cpu_count() or 1),
        "GPU": float(num_gpus if num_gpus is not None else len(gpu_ids)),
        "memory": float(max(0, psutil.virtual_memory().available - object_store_memory)),
        "object_store_memory": float(object_store_memory),
        NODE_RESOURCE_PREFIX + node_ip: 1.0,
        HEAD_NODE_RESOURCE: 1.0 if head else 0.0,
    }
    total.update({name: float(amount) for name, amount in custom.items()})
    fixed_set(total)  # validates names and amounts with a clear message
    return {name: amount for name, amount in total.items() if amount}

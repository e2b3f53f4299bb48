"""request_resources, as in Ray's ray.autoscaler.sdk: ask the autoscaler to size the
cluster for a load before it arrives (or to keep it sized), independent of what waits."""
import json
from typing import Dict, List, Optional

from ray_core.autoscaler import KV_NAMESPACE, REQUEST_KEY


def request_resources(num_cpus: Optional[int] = None,
                      bundles: Optional[List[Dict[str, float]]] = None) -> None:
    """Scale the cluster up at once to hold `num_cpus` one-CPU tasks and `bundles`
    (each a resource shape) at the same time, and keep it at least that large. Each
    call replaces the previous request; request_resources() with neither clears it."""
    if num_cpus is not None and (isinstance(num_cpus, bool) or not isinstance(num_cpus, int)
                                 or num_cpus < 0):
        raise TypeError(f"request_resources: num_cpus must be a non-negative int, got "
                        f"{num_cpus!r}")
    shapes: List[Dict[str, float]] = [{"CPU": 1.0}] * (num_cpus or 0)
    for bundle in bundles or []:
        if not isinstance(bundle, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and
                not isinstance(v, bool) and v >= 0 for k, v in bundle.items()):
            raise TypeError(f"request_resources: each bundle must map resource names to "
                            f"non-negative numbers, got {bundle!r}")
        shapes.append({k: float(v) for k, v in bundle.items() if v > 0})
    from ray_core._private import worker
    gcs = worker.global_worker().core_worker.gcs
    gcs.sync.kv_put(REQUEST_KEY, json.dumps(shapes).encode(), overwrite=True,
                    namespace=KV_NAMESPACE)

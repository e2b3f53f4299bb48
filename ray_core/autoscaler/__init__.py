"""The autoscaler: nodes launched for the demand that waits and ended when idle.

cluster_config.py  the cluster file (node types, limits, provider, setup commands)
demand.py          bin packing of waiting demand onto node types
autoscaler.py      one update: what to launch and end, and the status view
node_provider.py   the provider interface; local_provider.py, command_provider.py
monitor.py         the head's process that runs the updates against the GCS
sdk.py             request_resources(), as in Ray
commands.py        `ray_core up / down / exec`
"""
# Where drivers and the monitor meet in the GCS's key-value store.
KV_NAMESPACE = "autoscaler"
REQUEST_KEY = b"resource_request"
STATUS_KEY = b"status"

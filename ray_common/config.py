"""Every tunable in one registry, with its default and the reason it exists.

Precedence, lowest first: the default here, the environment variable
`RAY_CORE_<NAME>` (upper case), then `init(_system_config={...})`. A process that
starts another passes its overrides on through `RAY_CORE_SYSTEM_CONFIG` (JSON), so a
whole cluster started by one driver sees the same values. Names follow Ray's
`ray_config_def.h` where Ray has the same knob, so Ray users' `_system_config` works.
"""
import difflib
import json
import os
from typing import Any, Dict, NamedTuple

ENV_PREFIX = "RAY_CORE_"
SYSTEM_CONFIG_ENV = "RAY_CORE_SYSTEM_CONFIG"


class Tunable(NamedTuple):
    name: str
    default: Any
    doc: str


_TUNABLES = [
    # Logging.
    Tunable("log_level", "info", "Level of every process's log file: debug, info, warning, error."),
    Tunable("log_rotation_max_bytes", 64 * 1024 ** 2, "A log file rotates past this size (small beside log_dir_max_bytes, so the budget removes rotated history, not live files)."),
    Tunable("log_rotation_backup_count", 5, "Rotated log files kept per process."),
    Tunable("log_dir_max_bytes", 1024 ** 3, "Disk budget of a node's logs folder, all its processes' files together (room for the ~0.5 GB that 1M small tasks write); the log monitor removes the oldest rotated files past it; 0: no budget."),
    Tunable("runtime_env_max_package_bytes", 100 * 1024 ** 2, "A runtime_env working_dir or py_module package (zipped) larger than this is refused at .remote(): it travels through the GCS KV."),
    Tunable("runtime_env_setup_timeout_s", 600.0, "Creating a runtime_env's virtualenv (pip install) on a node gives up after this; the task then fails with RuntimeEnvSetupError."),
    Tunable("tqdm_flush_interval_s", 1.0, "A tqdm_ray bar in a task sends its state to the driver at most this often (its close always), as Ray's does: each send is a line of worker output."),
    Tunable("tqdm_patch_print", True, "While tqdm_ray bars are drawn on the driver's terminal, print() goes above them (as Ray's RAY_TQDM_PATCH_PRINT), so output and bars do not overwrite each other."),
    Tunable("log_dir_sweep_interval_ms", 1000, "How often the log monitor holds a node's logs folder to log_dir_max_bytes."),
    # Sessions, addresses, authentication.
    Tunable("temp_dir", "/tmp/ray_core", "Root of session folders, address and token files."),
    Tunable("max_sessions", 10, "Session folders kept under temp_dir: `ray_core stop` and a starting head remove older ones, never one in use."),
    Tunable("address", "", "Cluster address for init(address='auto') when no local cluster runs."),
    Tunable("auth_token", "", "Cluster token sent with every RPC; empty means read auth_token_file."),
    Tunable("auth_token_file", "", "File holding the cluster token; empty means <temp_dir>/auth_token."),
    Tunable("gcs_server_port", 6380, "Default GCS port of `ray_core start --head`."),
    Tunable("cluster_connect_timeout_s", 3.0, "A driver or node gives up on a cluster address that does not answer within this."),
    # RPC.
    Tunable("max_grpc_message_size", 512 * 1024 ** 2, "Largest gRPC message sent or received."),
    Tunable("rpc_default_deadline_s", 30.0, "Deadline of a control-plane call without its own."),
    Tunable("rpc_retry_max_attempts", 5, "Attempts of an idempotent call on UNAVAILABLE."),
    Tunable("rpc_retry_initial_backoff_ms", 100, "First wait between retries; doubles each time."),
    Tunable("rpc_retry_max_backoff_ms", 5000, "Cap on the wait between retries."),
    Tunable("grpc_server_handshake_timeout_ms", 10000, "A TCP client of a gRPC server that has not finished the HTTP/2 handshake by then is dropped (silent or trickling strangers hold no socket for long)."),
    Tunable("gcs_rpc_server_reconnect_timeout_s", 60, "How long clients keep retrying a lost GCS."),
    # Metrics and the dashboard.
    Tunable("metrics_export_enabled", True, "The GCS and every raylet serve Prometheus metrics on a free port, written to <session>/metrics/ and shown by `ray_core status`."),
    Tunable("metrics_scrape_timeout_s", 2.0, "A scrape waits this long for a process's io loop to read its tables (a busy loop gives a scrape without those gauges, never a hung one)."),
    Tunable("include_dashboard", True, "The head serves the dashboard (web UI and its JSON API under /api/)."),
    Tunable("dashboard_host", "127.0.0.1", "Where the dashboard listens: loopback unless asked otherwise (0.0.0.0 for every interface)."),
    Tunable("dashboard_port", 8265, "The dashboard's port (Ray's); a taken port gives way to a free one (`start --head --dashboard-port N` refuses it instead)."),
    Tunable("dashboard_niceness", 10, "The dashboard process runs at this nice level: its start (beside every head's) and its pages must not take CPU from the task path."),
    Tunable("dashboard_poll_ms", 1000, "How often an open page asks the dashboard for fresh data."),
    Tunable("dashboard_login_ttl_s", 86400, "A login link works once, within this many seconds of being printed."),
    Tunable("dashboard_start_timeout_s", 30.0, "How long a head waits for its dashboard process to serve."),
    # GCS.
    Tunable("health_check_initial_delay_ms", 5000, "Grace period before a new node is checked."),
    Tunable("health_check_period_ms", 3000, "Interval between GCS health checks of a raylet."),
    Tunable("health_check_timeout_ms", 10000, "Deadline of one health check."),
    Tunable("health_check_failure_threshold", 5, "Consecutive failed checks that mark a node DEAD."),
    Tunable("gcs_kv_max_value_bytes", 512 * 1024 ** 2, "Largest value the GCS KV store accepts."),
    Tunable("publisher_max_buffered_messages", 10000, "Per-subscriber buffer; oldest dropped past it."),
    Tunable("gcs_storage_operation_batch_size", 1000, "Keys per batched storage read or write."),
    Tunable("external_storage_namespace", "default", "Redis key prefix of this cluster's GCS tables; a restarted GCS must use the same one."),
    Tunable("gcs_server_start_timeout_s", 60.0, "How long start_gcs waits for the GCS to write its address."),
    Tunable("gcs_server_stop_grace_s", 2.0, "On SIGTERM the GCS lets in-flight calls finish this long."),
    Tunable("gcs_supervisor_backoff_initial_s", 0.5, "A GCS that dies again soon after a restart is restarted after this, doubling each time."),
    Tunable("gcs_supervisor_backoff_max_s", 30.0, "Longest wait before the supervisor restarts a GCS that keeps dying."),
    Tunable("gcs_supervisor_stable_s", 60.0, "A GCS that lived this long died by accident, not in a loop: restarted at once."),
    Tunable("gcs_max_dead_workers", 1000, "Dead workers the GCS worker table keeps (the oldest deaths are forgotten first)."),
    Tunable("maximum_gcs_destroyed_actor_cached_count", 10000, "Dead actors the GCS actor table keeps, for the state API and for handles first used after their actor died (a forgotten actor is unknown: such a handle's calls wait); the oldest deaths are forgotten first, ~1 KB each. Ray's name; its default is 100000."),
    Tunable("maximum_gcs_removed_placement_group_cached_count", 10000, "Removed placement groups the GCS placement group table keeps (the oldest removals are forgotten first, ~0.5 KB each); Ray keeps them all."),
    # Task events (the state API's tasks, `ray_core list tasks`, `timeline`, `explain`).
    Tunable("enable_task_events", True, "Workers and drivers report their tasks' state changes to the GCS (off: `list tasks`, `timeline` and task `explain` know nothing; the switch the overhead benchmark flips)."),
    Tunable("task_events_report_interval_ms", 1000, "A process sends its buffered task events to the GCS at least this often (off the task path, on its io loop)."),
    Tunable("task_events_send_batch_size", 10000, "A buffer holding this many task events is sent at once, before the interval ends."),
    Tunable("task_events_max_buffer_size", 100000, "Task events a process buffers while the GCS does not take them; more are dropped and counted."),
    Tunable("task_events_max_num_task_in_gcs", 20000, "Task attempts the GCS keeps per job (~1 KB each); past it the oldest finished ones are forgotten first, and counted as dropped."),
    Tunable("state_api_timeout_s", 30.0, "Default `timeout` of the state API (ray_core.util.state) and the CLI's list/get/summary/logs, as Ray's."),
    Tunable("state_api_default_limit", 100, "Rows a list_* call returns without `limit` (Ray's default)."),
    Tunable("log_read_max_bytes", 4 * 1024 ** 2, "Most bytes one GetLog call sends back (a --follow or a large file is read in several)."),
    Tunable("log_follow_poll_ms", 500, "How often `ray_core logs --follow` asks the node for new lines."),
    Tunable("stack_dump_timeout_s", 10.0, "How long the raylet waits for py-spy to dump one process's stacks."),
    Tunable("gcs_actor_schedule_retry_ms", 200, "Wait before the actor manager asks a raylet again after a failed lease call or with no node alive."),
    Tunable("gcs_placement_group_retry_ms", 1000, "How often the GCS tries again to place waiting placement groups when the cluster view does not change."),
    Tunable("placement_group_batch_reply_wait_s", 1.0, "How long the GCS holds the reply to a batch of placement group creations for their first placement attempt (so the caller learns which are ready without asking)."),
    Tunable("placement_group_wait_chunk_s", 30.0, "A wait for a placement group asks the GCS for at most this long per call (each call well inside its own deadline)."),
    Tunable("redis_start_timeout_s", 30.0, "How long start_redis waits for redis-server to answer PING."),
    # Raylet, scheduling, workers.
    Tunable("raylet_report_resources_period_milliseconds", 100, "Resource report interval."),
    Tunable("scheduler_spread_threshold", 0.5, "Local utilization above which hybrid scheduling spreads."),
    Tunable("num_workers_soft_limit", -1, "Idle workers kept beyond this are reaped; -1 means num_cpus."),
    Tunable("maximum_startup_concurrency", -1, "Workers starting at once; -1 means num_cpus."),
    Tunable("idle_worker_killing_time_threshold_ms", 1000, "Idle time before a surplus worker is killed."),
    Tunable("worker_register_timeout_seconds", 60, "A started worker must register within this."),
    Tunable("autoscaler_update_interval_s", 1.0, "How often the head's autoscaler reads the demand and decides."),
    Tunable("gcs_supervisor_record_wait_s", 10.0, "How long a head's supervisor waits for the node record to list it before it starts the autoscaler."),
    Tunable("drain_objects_timeout_s", 120.0, "How long an idle node's primary copies may take to move to another node before the autoscaler ends it."),
    Tunable("autoscaler_node_start_timeout_s", 120.0, "A launched node must register within this, or the autoscaler ends it and records a failure."),
    Tunable("raylet_gcs_check_period_ms", 1000, "How often a raylet makes sure its GCS still answers (it shuts down once the GCS is gone for good)."),
    Tunable("worker_start_attempts", 3, "Workers a lease request may see fail to start (killed, crashed before registering) before the request fails."),
    Tunable("raylet_dead_owners_remembered", 10000, "Dead lease owners a raylet remembers, so a late request of theirs is refused rather than granted to nobody."),
    Tunable("worker_lease_timeout_milliseconds", 0, "0: lease requests queue until granted."),
    Tunable("worker_entry_module", "ray_core.workers.default_worker", "Module the raylet runs (python -m) as a worker process."),
    Tunable("raylet_start_timeout_s", 60.0, "A launcher waits this long for a raylet's info file."),
    Tunable("worker_exit_grace_ms", 2000, "After asking a worker to exit, SIGKILL it past this."),
    Tunable("object_pull_retry_rounds", 3, "Rounds over all known locations before a pull fails."),
    Tunable("object_pull_location_poll_ms", 100, "Re-ask an object's owner at this interval while it knows no copy."),
    Tunable("raylet_unregister_timeout_ms", 2000, "A stopping raylet waits this long to unregister at the GCS."),
    Tunable("worker_prestart_on_driver", True, "Start num_cpus idle workers for a job when its driver registers."),
    # Objects.
    Tunable("max_direct_call_object_size", 100 * 1024, "Values up to this size stay in process memory, larger go to plasma."),
    Tunable("task_rpc_inlined_bytes_limit", 10 * 1024 ** 2, "Total inlined argument bytes per task."),
    Tunable("object_store_memory", 0, "Plasma capacity in bytes; 0 means 30% of system memory."),
    Tunable("object_transfer_max_header_bytes", 64 * 1024 ** 2, "Largest token, pull request or object header (with its metadata) an object transfer accepts."),
    Tunable("object_transfer_handshake_timeout_s", 10.0, "A puller must send its token and pull request within this of connecting (a puller sends both at once); a silent or trickling peer is dropped."),
    Tunable("object_transfer_chunk_bytes", 16 * 1024 ** 2, "A pull asks for an object in slices of this size, several at once over several connections (and holders)."),
    Tunable("object_transfer_connections", 4, "Connections one pull of a large object keeps open at once, spread over the nodes that hold a copy."),
    Tunable("object_transfer_threads", 8, "Threads of a raylet that receive pulled chunks, and as many that send served ones (blocking socket calls, the GIL released)."),
    Tunable("object_transfer_chunk_retries", 8, "Chunk connections of one pull that may fail (dropped, refused, stalled) before the pull of that object fails."),
    Tunable("object_transfer_stall_timeout_s", 60.0, "A chunk connection on which no byte moves for this long is dropped and its chunk asked for again (a holder whose machine vanished sends no reset)."),
    Tunable("object_spilling_directory", "", "Where primary copies spill; empty means <session>/spill."),
    Tunable("memory_usage_threshold", 0.95, "Node memory fraction above which the raylet kills a worker."),
    Tunable("memory_monitor_refresh_ms", 250, "Interval of the raylet's memory monitor; 0 disables it."),
    Tunable("object_spilling_enabled", True, "A full store spills pinned primary copies to disk instead of failing the put."),
    Tunable("min_spilling_size", 100 * 1024 ** 2, "Spill at least this many bytes per round (batched into one file), so small puts do not spill one by one."),
    Tunable("max_spill_file_objects", 256, "Objects written into one spill file at most."),
    Tunable("object_spilling_min_free_disk_bytes", 256 * 1024 ** 2, "Spilling stops (and put fails) when the spill disk would keep less free space than this."),
    Tunable("object_store_full_max_retries", 8, "A put that finds the store full asks the raylet to spill this many times before failing."),
    Tunable("worker_memory_usage_threshold", 0.0, "One worker's memory (RSS) fraction of the node above which the raylet kills it; 0 disables (then only memory_usage_threshold applies)."),
    Tunable("raylet_health_probe_timeout_s", 2.0, "Deadline of the owner's HealthCheck of a raylet it suspects dead (lineage reconstruction)."),
    Tunable("plasma_store_startup_timeout_s", 30.0, "A started plasma store must accept connections within this."),
    Tunable("plasma_max_frame_bytes", 64 * 1024 ** 2, "Largest plasma protocol frame; bigger ones are malformed and drop the client."),
    Tunable("plasma_stalled_client_timeout_s", 10.0, "The store drops a client connected this long without HELLO, or stopped this long mid-frame: a silent or trickling peer holds no descriptor and buffer for ever."),
    Tunable("plasma_listen_backlog", 1024, "Pending connections the store's socket queues (hundreds of workers connect at once)."),
    Tunable("plasma_subscriber_max_buffered_bytes", 64 * 1024 ** 2, "Unsent notifications per subscriber before the store drops it."),
    Tunable("plasma_client_signal_check_ms", 200, "A plasma client blocked on its socket looks for a pending signal (Ctrl-C) this often: one landing between send() and recv() interrupts nothing."),
    Tunable("plasma_inline_create_bytes", 64 * 1024, "create_and_seal sends values up to this size through the socket (one round trip); larger ones are written in place (faster from 64 KiB: 0.2 ms vs 1.2 ms at 256 KiB)."),
    Tunable("preallocate_plasma_memory", False, "Fault in the whole region at startup so first writes run at memcpy speed (costs the full capacity in RAM at once)."),
    # CoreWorker: task submission, execution and the public API.
    Tunable("max_tasks_in_flight_per_worker", 16, "Tasks pushed to one leased worker before replies (pipelining)."),
    Tunable("max_pending_lease_requests_spread", 10, "Lease requests one owner has out at once for the queued tasks of one SPREAD scheduling key (other keys: one)."),
    Tunable("pipeline_max_task_ms", 5.0, "Tasks pipelined on a worker only while a key's tasks take less than this each."),
    Tunable("worker_lease_idle_linger_ms", 200, "An idle leased worker is returned after this, so submit/get loops reuse it."),
    Tunable("task_socket_stalled_peer_timeout_s", 10.0, "A worker drops a task connection that has not sent its HELLO, or stopped mid-frame, for this long of its waiting: a silent or trickling peer holds no socket and buffer for ever."),
    Tunable("task_reply_flush_ms", 2, "A worker running a pipelined batch sends replies at least this often."),
    Tunable("task_max_retries", 3, "Default max_retries of a task whose worker dies."),
    Tunable("fetch_timeout_s", 600.0, "Longest wait for the raylet to make a remote object local."),
    Tunable("node_start_timeout_s", 60.0, "init() gives the GCS and the raylet this long to come up."),
    Tunable("log_monitor_poll_ms", 100, "How often a node's log monitor tails worker stdout/stderr files."),
    Tunable("log_monitor_max_read_bytes", 1024 ** 2, "Most bytes of one worker file a log monitor publishes per poll (a flood waits its turn)."),
    Tunable("shutdown_grace_s", 5.0, "Processes get this long to exit on SIGTERM before SIGKILL."),
    Tunable("async_actor_max_concurrency", 1000, "Calls an async actor runs at once when max_concurrency is not given."),
    Tunable("actor_state_poll_ms", 200, "While a caller cannot reach an actor it also polls the GCS for its state, first after this (pubsub may miss a change across a GCS restart)."),
    Tunable("actor_state_poll_max_ms", 2000, "The caller's GCS polls for an actor it cannot reach back off up to this."),
    Tunable("get_hang_warning_s", 30.0, "A get() or wait() blocked this long says once, on the terminal, what each missing object waits for; 0 disables."),
    Tunable("get_hang_report_timeout_s", 5.0, "Longest a hang report may spend finding out where the objects are."),
    Tunable("get_hang_probe_timeout_s", 2.0, "A hang report's probe of an owner that does not answer gives up after this."),
    Tunable("state_probe_timeout_s", 10.0, "`explain` asks each node and worker for what it holds within this: one that hangs (a stopped raylet) is left out of the answer instead of failing it."),
    Tunable("plasma_existing_object_wait_ms", 10000, "A retried task whose return an earlier run is still writing waits this long for it to be sealed."),
    Tunable("put_owner_wait_s", 60.0, "put(_owner=actor) waits this long for the actor to be alive before it raises."),
    Tunable("actor_lost_call_grace_ms", 2000, "Calls sent to an actor just marked dead may still be answered (a graceful end runs them first); past this they fail."),
    Tunable("actor_call_reorder_wait_ms", 30000, "An actor runs a caller's calls in sequence order; a missing one holds back those after it at most this long."),
    Tunable("worker_poll_timeout_s", 1.0, "A worker's task loop wakes this often to notice it must exit."),
    Tunable("ref_count_flush_interval_ms", 100, "Queued ref count changes are applied (and objects freed) at least this often."),
    Tunable("copy_threads", 2, "Threads that copy one large buffer into plasma (one thread cannot saturate memory)."),
    Tunable("parallel_copy_min_bytes", 16 * 1024 ** 2, "Buffers at least this large are copied into plasma by copy_threads threads with streaming stores; smaller ones by memcpy (their lines may still be cached when read)."),
    Tunable("log_flush_interval_ms", 100, "Buffered per-task log lines reach the log file at least this often."),
    # ray_core.util: the doors from multiprocessing, joblib and Dask.
    Tunable("pool_chunks_in_flight_per_actor", 2, "Chunks a multiprocessing Pool sends one of its actors before a reply: one running, one queued hides the round trip, and few queued keeps long chunks balanced across actors."),
    Tunable("joblib_pool_keep_s", 2.0, "The joblib backend keeps the Pool of a finished Parallel call this long for the next call of the same size (loky keeps its workers too), then gives its CPUs back."),
    Tunable("joblib_put_arg_min_bytes", 100 * 1024, "The joblib backend puts an argument this large (an array, bytes) in the object store once per Parallel call and sends its ref, instead of copying it into every batch (smaller ones are inlined in the task anyway)."),
    Tunable("progress_line_interval_s", 2.0, "Without tqdm, progress=True writes a plain progress line at most this often."),
]

DEFAULTS: Dict[str, Tunable] = {t.name: t for t in _TUNABLES}


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, DEFAULTS, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see ray_common/config.py for the list"
    return ValueError(f"unknown ray_core config name {name!r}{hint}")


def _coerce(name: str, value: Any) -> Any:
    """Convert an override (often an env-var string) to the default's type."""
    default = DEFAULTS[name].default
    kind = type(default)
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"ray_core config {name} must be {kind.__name__} "
                         f"(default {default!r}), got {value!r}") from None


class Config:
    """Resolved values; read as attributes (`config.health_check_period_ms`)."""

    def __init__(self, environ=None):
        self._environ = os.environ if environ is None else environ
        self._system_config: Dict[str, Any] = {}
        inherited = self._environ.get(SYSTEM_CONFIG_ENV)
        if inherited:
            self.update(json.loads(inherited))

    def get(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise _unknown(name)
        if name in self._system_config:
            return self._system_config[name]
        env_value = self._environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            return _coerce(name, env_value)
        return DEFAULTS[name].default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in DEFAULTS:
            raise AttributeError(str(_unknown(name)))
        return self.get(name)

    def update(self, system_config: Dict[str, Any]) -> None:
        """Apply `_system_config` overrides; every name is checked before any is applied."""
        coerced = {}
        for name, value in system_config.items():
            if name not in DEFAULTS:
                raise _unknown(name)
            coerced[name] = _coerce(name, value)
        self._system_config.update(coerced)

    def overrides(self) -> Dict[str, Any]:
        return dict(self._system_config)

    def child_env(self) -> Dict[str, str]:
        """Environment entries that give a child process the same overrides."""
        if not self._system_config:
            return {}
        return {SYSTEM_CONFIG_ENV: json.dumps(self._system_config)}


config = Config()

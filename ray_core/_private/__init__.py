"""ray_core internals. Layout, following ARCHITECTURE.md's "A task's life":

- serialization.py   values <-> (metadata, data, out-of-band buffers); refs found inside
- memory_store.py    the owner's in-process store of small values and markers of plasma ones
- plasma_objects.py  large values: write, hold or pin, read zero-copy, release and free
- background.py      the thread pool for work that must leave the io loop
- reference_counter.py  ref counts: local, and borrowers counted per worker (owner side)
- object_lifetime.py  borrower registration, contained refs, copies, lineage
  reconstruction, memory_summary rows (issue 8)
- task_manager.py    pending tasks the process owns: retries, completion, failure
- dependency_resolver.py  waits for owned ref arguments, inlines small ones
- normal_task_submitter.py  queues per scheduling key, leases, pipelined pushes
- task_transport.py  the framed socket that carries PushTaskBatch/PushTaskReplyBatch
- lease_client.py    the raylet calls the CoreWorker makes (leases, pinning, blocking)
- function_manager.py  export of functions to the GCS KV once; import and cache in workers
- task_executor.py   the worker side: receive, execute, reply
- core_worker.py     the CoreWorker that ties these together, in driver or worker mode
- core_worker_service.py  its gRPC service (object status for borrowers, cancel, exit)
- worker.py          the process-global state behind the public API
- options.py         validation of @remote/.options() keywords
- runtime_env.py     runtime_env checks, packages uploaded once, merging (the node side
                     is ray_raylet/runtime_envs.py)
- progress_bars.py   the driver's one set of tqdm_ray bars
- task_log.py        the per-task glog lines, buffered off the hot path
- log_monitor.py     worker stdout/stderr to the driver that ran the task, prefixed
                     (pid=N, ip=IP): per-node monitor process -> GCS pubsub -> driver
- log_budget.py      the node's logs folder held to log_dir_max_bytes (the monitor sweeps)
- microbenchmark.py  `ray_core microbenchmark` rows (also against Ray itself)
- actor_submitter.py  the caller's side of actor calls: address from the GCS, ordered
  pushes on the task socket, restarts and deaths
- actor_runtime.py   the actor a worker hosts: creation push, plain/threaded/async calls
- microbenchmark_actors.py  the actor rows of the microbenchmark
- _object_ref.pyx, _shared_buffer.pyx  Cython: ObjectRef; plasma views that release
  their object when the last numpy/Arrow view over them dies
Invariant: the submitter and every socket live on the io loop thread (ray_common.rpc);
user threads only touch the task manager, memory store and ref counter, which lock
(and write actor calls straight to an actor's socket under the actor submitter's lock).
"""

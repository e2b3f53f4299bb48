"""The actor rows of the microbenchmark, defined as Ray's own `ray microbenchmark` does.

Self-contained (numpy-free, no ray_core import): `make bench-vs-ray` runs the
microbenchmark with Ray's interpreter too, where only the backend module passed in
exists. As in Ray's ray_perf.py: n_cpu = cpu_count() // 2 actors for the 1:n and n:n
rows (at least 1), the "n:n" rows drive them from 4 tasks of 1,000 calls each, "with
arg" passes an ObjectRef made by ray.put, and the concurrent row uses max_concurrency=16.
"""
import multiprocessing


def make_actors(ray):
    @ray.remote
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

    @ray.remote
    class AsyncActor:
        async def small_value(self):
            return b"ok"

        async def small_value_with_arg(self, i):
            return b"ok"

    @ray.remote
    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            results = []
            for s in self.servers:
                results.extend([s.small_value.remote() for _ in range(n)])
            ray.get(results)

        def small_value_batch_arg(self, n):
            x = ray.put(0)
            results = []
            for s in self.servers:
                results.extend([s.small_value_arg.remote(x) for _ in range(n)])
            ray.get(results)

    return Actor, AsyncActor, Client


def run_actor_rows(ray, add, timeit, scale: float) -> None:
    """Measure the actor rows; `add(name, value, unit)` records each."""
    Actor, AsyncActor, Client = make_actors(ray)
    n_cpu = max(1, multiprocessing.cpu_count() // 2)

    def one_to_one(kind, actor):
        """The "1:1 <kind> calls sync" and "... async" rows of one fresh actor."""
        ray.get(actor.small_value.remote())
        add(f"1:1 {kind} calls sync", timeit(lambda: ray.get(actor.small_value.remote()),
                                             min_seconds=scale), "calls/s")
        add(f"1:1 {kind} calls async",
            timeit(lambda: ray.get([actor.small_value.remote() for _ in range(1000)]), 1000,
                   min_seconds=scale), "calls/s")

    a = Actor.remote()
    one_to_one("actor", a)
    concurrent = Actor.options(max_concurrency=16).remote()
    ray.get(concurrent.small_value.remote())
    add("1:1 actor calls concurrent",
        timeit(lambda: ray.get([concurrent.small_value.remote() for _ in range(1000)]), 1000,
               min_seconds=scale), "calls/s")

    n = 5000
    actors = [Actor.remote() for _ in range(n_cpu)]
    client = Client.remote(actors)
    ray.get(client.small_value_batch.remote(10))
    add("1:n actor calls async", timeit(lambda: ray.get(client.small_value_batch.remote(n)),
                                        n * len(actors), min_seconds=scale), "calls/s")

    m, n = 4, 1000
    targets = [Actor.remote() for _ in range(n_cpu)]

    @ray.remote
    def work(actors, n):
        ray.get([actors[i % len(actors)].small_value.remote() for i in range(n)])

    ray.get(work.remote(targets, 10))
    add("n:n actor calls async", timeit(lambda: ray.get([work.remote(targets, n)
                                                         for _ in range(m)]),
                                        m * n, min_seconds=scale), "calls/s")

    servers = [Actor.remote() for _ in range(n_cpu)]
    clients = [Client.remote(s) for s in servers]
    ray.get([c.small_value_batch_arg.remote(10) for c in clients])
    add("n:n actor calls with arg async",
        timeit(lambda: ray.get([c.small_value_batch_arg.remote(n) for c in clients]),
               n * len(clients), min_seconds=scale), "calls/s")

    aa = AsyncActor.remote()
    one_to_one("async-actor", aa)
    add("1:1 async-actor calls with args async",
        timeit(lambda: ray.get([aa.small_value_with_arg.remote(i) for i in range(1000)]), 1000,
               min_seconds=scale), "calls/s")

    n = 5000
    async_actors = [AsyncActor.remote() for _ in range(n_cpu)]
    async_client = Client.remote(async_actors)
    ray.get(async_client.small_value_batch.remote(10))
    add("1:n async-actor calls async",
        timeit(lambda: ray.get(async_client.small_value_batch.remote(n)), n * len(async_actors),
               min_seconds=scale), "calls/s")

    n = 1000
    async_targets = [AsyncActor.remote() for _ in range(n_cpu)]
    ray.get(work.remote(async_targets, 10))
    add("n:n async-actor calls async",
        timeit(lambda: ray.get([work.remote(async_targets, n) for _ in range(m)]), m * n,
               min_seconds=scale), "calls/s")
    for handle in [a, concurrent, aa] + actors + targets + servers + clients + [client] + \
            async_actors + async_targets + [async_client]:
        ray.kill(handle)

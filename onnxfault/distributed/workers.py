"""A pool of Ray actors running one job over items (shards, chunks), with retries and progress.

A *job* is a picklable object with ``start(shared) -> state`` (run once per actor: open the data, build the
session or the torch module) and ``run(state, item, on_batch) -> result``. Actors are restarted by Ray
when their process dies (``max_restarts``) and the item they held is retried (``max_task_retries``); each
item is computed from scratch, so a retried item gives the same result. Progress is counted per item on a
small actor, as the highest count an item reached, so a retried item is not counted twice.
"""
from __future__ import annotations

import time
from typing import Callable

from ..errors import OnnxFaultError

MAX_RESTARTS = 3  # per actor: a worker process that dies is started again this many times
POLL_S = 0.2  # how often the driver reads the progress
LAST_POOL: dict = {}  # what the last pool of this process measured (workers, items, their peak RSS): diagnostics
REPORT_S = 0.2  # how often a worker reports its progress


class ShardWorker:
    """One actor: the job's state, built once, and the items given to it."""

    def __init__(self, job):
        self.job = job
        self.state = None

    def run(self, shared: list, key: int, item, progress):
        """``(key, job.run(item))``; the first item (after a restart too) builds the state from ``shared``, a
        nested object reference (so it is fetched once, not with every item)."""
        if self.state is None:
            import ray

            self.state = self.job.start(ray.get(shared[0]))
        done, last = 0, time.monotonic()

        def on_batch(n: int) -> None:
            nonlocal done, last
            done += n
            if progress is not None and time.monotonic() - last > REPORT_S:
                progress.report.remote(key, done)
                last = time.monotonic()

        result = self.job.run(self.state, item, on_batch)
        if progress is not None:
            progress.report.remote(key, done)
        return key, result

    def peak_rss_mb(self) -> float:
        """This worker process's peak resident set size (MB)."""
        from ..peak_memory import peak_rss_mb

        return peak_rss_mb()


class Progress:
    """Samples done per item, as the highest count each item reported."""

    def __init__(self):
        self.done: dict[int, int] = {}

    def report(self, key: int, done: int) -> None:
        self.done[key] = max(self.done.get(key, 0), done)

    def counts(self) -> dict[int, int]:
        return self.done


def run_pool(ray, job, shared, items: list, workers: int, gpus: bool, sizes: list[int] | None = None,
             on_progress: Callable[[int], None] | None = None) -> tuple[list, list[float | None]]:
    """``job.run`` over ``items`` on ``workers`` actors (Ray's ``ActorPool`` gives each free actor the next
    item), the results in item order, and each actor's peak resident memory (MB). With ``sizes`` (samples per
    item), ``on_progress(n)`` gets the samples done since its last call, across workers."""
    from ray.exceptions import RayTaskError
    from ray.util import ActorPool

    shared_ref = [ray.put(shared)]  # stored once, fetched by each actor; held here until the pool is done
    actor = ray.remote(ShardWorker).options(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS,
                                            num_cpus=0 if gpus else 1, num_gpus=1 if gpus else 0)
    actors = [actor.remote(job) for _ in range(min(workers, len(items)))]
    progress = ray.remote(Progress).options(num_cpus=0).remote() if on_progress and sizes else None
    pool = ActorPool(actors)
    for key, item in enumerate(items):
        pool.submit(lambda a, keyed: a.run.remote(shared_ref, *keyed, progress), (key, item))
    results: list = [None] * len(items)
    finished: set[int] = set()
    reported = 0
    try:
        while pool.has_next():
            try:
                key, results[key] = pool.get_next_unordered(timeout=POLL_S)
                finished.add(key)
            except TimeoutError:
                pass
            if progress is not None:  # finished items count whole; the others as far as they reported
                partial = ray.get(progress.counts.remote())
                total = sum(sizes[k] if k in finished else min(n, sizes[k]) for k, n in partial.items()) + \
                    sum(sizes[k] for k in finished if k not in partial)
                if total > reported:
                    on_progress(total - reported)
                    reported = total
        peaks = ray.get([a.peak_rss_mb.remote() for a in actors])
        LAST_POOL.update(workers=len(actors), items=len(items), worker_peak_rss_mb=peaks)
    except RayTaskError as err:
        if isinstance(err.cause, OnnxFaultError):
            raise OnnxFaultError(str(err.cause)) from None
        raise
    finally:
        for a in actors:
            ray.kill(a)
        if progress is not None:
            ray.kill(progress)
    return results, peaks


def map_items(job, shared, items: list, ray_options, device: str = "auto", sizes: list[int] | None = None,
              on_progress: Callable[[int], None] | None = None) -> tuple[list, list[float | None]]:
    """:func:`run_pool` on the Ray runtime ``ray_options`` names (started or joined for the call): one GPU
    per actor when the cluster has GPUs and ``device`` is not cpu."""
    from .options import ray_runtime, use_gpus, worker_count

    with ray_runtime(ray_options) as ray:
        gpus = use_gpus(ray, device)
        return run_pool(ray, job, shared, items, worker_count(ray, ray_options, gpus), gpus, sizes, on_progress)

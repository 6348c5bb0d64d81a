"""Where shard tasks run: this machine's process pool, or a Dask cluster (local or at an address).

Both take the shard URLs lazily and keep a bounded window of tasks in flight, submitting the next
as each finishes, so a job of any size holds neither its task list nor its results in memory.
Both retry a shard that raised or whose worker died, up to `retries` more times, then give up on
it with a `failed` outcome and go on; what a retry of an already-committed shard finds is its
output (shards.commit is create-only), so a retry never writes twice.

Dask does its own scheduling, retries (`retries=`) and poison-task detection (a task whose workers
keep dying is marked failed after `distributed.scheduler.allowed-failures` deaths); the local pool
has neither, so after a worker dies it runs the shards that were in flight one at a time, which
pins the death on the one that caused it.

A file audit on Dask (scan_files) sends the files in batches, one task each, and yields their
records in input order, as the local pool does.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from suite.audit.defaults import ENGINES, SHARD_RETRIES
from suite.audit.scan import AuditOptions, audit_file, new_record, settle_process
from suite.audit.shards import ShardJob, audit_shard

WINDOW_PER_WORKER = 2  # tasks in flight per worker: one running, one queued behind it
FILES_PER_TASK = 64  # a file audit on Dask: files per task (a task costs the scheduler ~1 ms)

ShardTask = Callable[[str, ShardJob], dict[str, Any]]


@dataclass(frozen=True)
class Engine:
    name: str = "local"  # local | dask
    workers: int = 1  # local processes, or a LocalCluster's worker processes
    scheduler: str | None = None  # a Dask scheduler's address; None starts a LocalCluster
    retries: int = SHARD_RETRIES  # further attempts at a shard that raised or whose worker died


def failed(shard_url: str, error: str, attempts: int) -> dict[str, Any]:
    return {"shard": shard_url, "state": "failed", "error": error[:2000], "attempts": attempts}


def run_shards(
    urls: Iterable[str], job: ShardJob, engine: Engine, task: ShardTask = audit_shard
) -> Iterator[dict[str, Any]]:
    """One outcome per shard URL, in the order they finish: `task`'s result, or a `failed` one."""
    if engine.name == "local":
        return _run_local(urls, job, engine, task)
    if engine.name == "dask":
        return _run_dask(urls, job, engine, task)
    raise ValueError(f"unknown engine {engine.name!r}; known: {', '.join(ENGINES)}")


def _run_local(urls: Iterable[str], job: ShardJob, engine: Engine, task: ShardTask) -> Iterator[dict[str, Any]]:
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from suite.audit.scan import pool_context

    pending = iter(urls)
    retry: deque[str] = deque()  # raised: run again, alongside others
    suspects: deque[str] = deque()  # in flight when a worker died: run again, alone
    attempts: Counter[str] = Counter()
    window = WINDOW_PER_WORKER * engine.workers
    pool = ProcessPoolExecutor(engine.workers, mp_context=pool_context())
    in_flight: dict[Future[dict[str, Any]], str] = {}
    try:
        while True:
            while len(in_flight) < window:
                if suspects:
                    if not in_flight:  # a suspect runs alone
                        url = suspects.popleft()
                        in_flight[pool.submit(task, url, job)] = url
                    break
                url = retry.popleft() if retry else next(pending, None)
                if url is None:
                    break
                in_flight[pool.submit(task, url, job)] = url
            if not in_flight:
                return
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                url = in_flight.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    broken = True
                    if in_flight or len(done) > 1:
                        suspects.append(url)  # not alone: the death may be another shard's
                        continue
                    attempts[url] += 1
                    if attempts[url] > engine.retries:
                        yield failed(url, "its worker process died on every attempt", attempts[url])
                    else:
                        suspects.append(url)
                except Exception as exc:
                    attempts[url] += 1
                    if attempts[url] > engine.retries:
                        yield failed(url, f"{type(exc).__name__}: {exc}", attempts[url])
                    else:
                        retry.append(url)
            if broken:
                suspects.extend(in_flight.values())
                in_flight.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = ProcessPoolExecutor(engine.workers, mp_context=pool_context())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def dask_client(engine: Engine) -> Iterator[Any]:
    """A client of the scheduler at `engine.scheduler`, or of a LocalCluster started for the job."""
    import dask
    from distributed import Client, LocalCluster

    # A worker holds only the task it runs (saturation 1.0), so a worker's death makes only that
    # task suspicious: a poison shard cannot use up the retries of the shards queued behind it.
    settings = {
        "distributed.scheduler.allowed-failures": engine.retries,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with contextlib.ExitStack() as stack:
        with dask.config.set(settings):
            address = engine.scheduler or stack.enter_context(
                LocalCluster(
                    n_workers=engine.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,  # failures are reported in the outputs
                )
            )
            client = stack.enter_context(Client(address))
        yield client


def _run_dask(urls: Iterable[str], job: ShardJob, engine: Engine, task: ShardTask) -> Iterator[dict[str, Any]]:
    from distributed import as_completed

    pending = iter(urls)
    shards: dict[str, str] = {}  # task key -> shard URL
    with dask_client(engine) as client:
        finished = as_completed()

        def submit() -> bool:
            url = next(pending, None)
            if url is None:
                return False
            key = f"audit-shard-{hashlib.sha256(url.encode()).hexdigest()[:20]}"
            shards[key] = url
            finished.add(client.submit(task, url, job, key=key, retries=engine.retries, pure=False))
            return True

        for _ in range(_dask_window(client)):
            if not submit():
                break
        for future in finished:
            url = shards.pop(future.key)
            try:
                yield future.result()
            except Exception as exc:
                yield failed(url, f"{type(exc).__name__}: {exc}", engine.retries + 1)
            future.release()
            while finished.count() < _dask_window(client) and submit():
                pass


def scan_files(paths: Iterable[str], options: AuditOptions, engine: Engine) -> Iterator[dict[str, Any]]:
    """Files' records in input order, FILES_PER_TASK files per Dask task (every worker must see the
    paths: a LocalCluster, or a filesystem shared by every machine)."""
    pending = iter(paths)
    in_order: deque[tuple[list[str], Any]] = deque()
    with dask_client(engine) as client:
        while True:
            while len(in_order) < _dask_window(client):
                batch = list(itertools.islice(pending, FILES_PER_TASK))
                if not batch:
                    break
                in_order.append((batch, client.submit(audit_files, batch, options, retries=engine.retries, pure=False)))
            if not in_order:
                return
            batch, future = in_order.popleft()
            try:
                yield from future.result()
            except Exception as exc:
                for path in batch:
                    record = new_record(path=path)
                    record["error"] = f"the worker auditing it died or failed ({type(exc).__name__}: {exc})"[:500]
                    record["error_kind"] = "corrupt"
                    yield record
            future.release()


def audit_files(paths: list[str], options: AuditOptions) -> list[dict[str, Any]]:
    """One Dask task of a file audit."""
    settle_process()
    return [audit_file(path, options) for path in paths]


def _dask_window(client: Any) -> int:
    """In flight: WINDOW_PER_WORKER tasks per worker thread now in the cluster (it may grow)."""
    return max(WINDOW_PER_WORKER, WINDOW_PER_WORKER * sum(client.nthreads().values()))

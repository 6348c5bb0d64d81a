"""Run scenarios, each in its own worker process, and keep every outcome.

- The runner never imports a model or creates a CUDA context: it decides what cannot run here
  (`skipped`) and starts a `WorkerProcess` for the rest, under a timeout.
- Whatever happens to a worker (a record, a crash, a hang) becomes exactly one record, appended
  to the results store before the next scenario starts.
- Workers die with the runner (worker.die_with_runner): a `kill -9` of the runner leaves no
  orphan holding the GPU, and `--resume` continues the run.
- A capacity search is one scenario whose probes a `ProbeServer` answers: one worker per
  configuration, loaded once (suite.probe_worker says how each probe stays isolated).
- Where the card has room, the searches of different configurations run side by side, each in its
  own thread and probe server (`probe_servers_that_fit`); anything timed runs alone.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import cache
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from suite import capacity, probe_worker, processes, worker
from suite.record import SCHEMA_VERSION
from suite.results import ResultsStore
from suite.scenario import Scenario

LOG_TAIL_LINES = 15
MAX_PROBE_SERVERS = 4
# room each probe server needs beside its largest budget: a probe rerun without the cap, the context
PROBE_SERVER_MARGIN_GIB = 2.0
# CPU cores per probe server: each runs Python, launches kernels and moves offloaded weights
CORES_PER_PROBE_SERVER = 4


@cache
def worker_context():
    """forkserver where the platform has it (fresh processes without re-importing torch), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        # the server's preload would otherwise print transformers' import-time notices (e.g. that
        # torchvision is absent, which nothing here needs) on the user's terminal
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(worker.PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


@dataclass
class WorkerOutcome:
    returncode: int | None
    timed_out: bool
    last_event: dict[str, Any] | None
    log_tail: str
    # set when the limit that expired was a phase's own budget (an event's `budget_s`), not the timeout
    phase_budget_s: float | None = None


class DeadlinePassed(Exception):
    """A worker gave no event, and did not end, before its deadline."""


class WorkerProcess:
    """One worker process: target(*args, [requests,] events, log_path, runner_pid) in its own process group.

    - `receive` waits for its next event up to a deadline; `send` makes a request, where it takes them;
    - `close` kills it with whatever it started (its sampler) and joins it; `log_tail` is where its traceback is.
    """

    def __init__(self, target: Callable[..., None], args: tuple, log_path: Path, requests: bool = False):
        context = worker_context()
        self.log_path = log_path
        self._events, events_out = context.Pipe(duplex=False)
        ends = [events_out]
        if requests:
            requests_in, self._requests = context.Pipe(duplex=False)
            ends.insert(0, requests_in)
        self._proc = context.Process(target=target, args=(*args, *ends, str(log_path), os.getpid()), daemon=False)
        self._proc.start()
        for end in ends:  # the worker's ends: the parent keeps none, so a dead worker reads as EOF
            end.close()

    @property
    def alive(self) -> bool:
        return self._proc.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._proc.exitcode

    def send(self, request: Any) -> None:
        """A request to the worker; OSError when it is gone."""
        self._requests.send(request)

    def receive(self, deadline: float) -> dict[str, Any] | None:
        """The worker's next event; None once it has closed its end or died; DeadlinePassed at `deadline`
        (time.monotonic())."""
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise DeadlinePassed
            ready = wait([self._events, self._proc.sentinel], timeout=min(deadline - now, 1.0))
            if self._events in ready:
                try:
                    return self._events.recv()
                except EOFError:
                    return None
            if self._proc.sentinel in ready and not self._events.poll():
                return None

    def wait_exit(self, deadline: float) -> None:
        """Until the worker has exited; DeadlinePassed at `deadline`."""
        while self.alive:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlinePassed
            self._proc.join(timeout=min(remaining, 1.0))

    def close(self, wait_s: float = 0.0) -> None:
        """Wait up to `wait_s` for the worker to end, then kill its process group (a sampler it left
        behind too) and reap it."""
        self._proc.join(timeout=wait_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self._proc.kill()
        self._proc.join()
        self._events.close()

    def log_tail(self) -> str:
        """The last lines the worker wrote to its log (where its traceback is)."""
        path = self.log_path
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])

    def outcome(self, timed_out: bool, last_event: dict[str, Any] | None, phase_budget_s: float | None = None):
        return WorkerOutcome(self.exitcode, timed_out, last_event, self.log_tail(), phase_budget_s)


def run_process(
    target, args: tuple, log_path: Path, timeout_s: float, on_event: Callable[[dict], None] = lambda e: None
) -> WorkerOutcome:
    """Run target(*args, events, log_path, runner_pid) in a worker to its end; relay its events; kill it at
    the deadline.

    An event with `budget_s` gives its phase a deadline of its own (torch.compile's first call), which
    holds until an event of another phase arrives.
    """
    worker = WorkerProcess(target, args, log_path)
    deadline = time.monotonic() + timeout_s
    phase_budget: tuple[str, float, float] | None = None  # (phase, its budget in s, its deadline)
    last_event = None
    try:
        while (event := worker.receive(min(deadline, phase_budget[2]) if phase_budget else deadline)) is not None:
            last_event = event
            if "budget_s" in event:
                budget = float(event["budget_s"])
                phase_budget = (event.get("phase", ""), budget, time.monotonic() + budget)
            elif phase_budget and event.get("phase") != phase_budget[0]:
                phase_budget = None
            on_event(event)
        worker.wait_exit(deadline)
    except DeadlinePassed:
        worker.close()
        expired = phase_budget[1] if phase_budget and phase_budget[2] < deadline else None
        return worker.outcome(True, last_event, expired)
    worker.close()
    return worker.outcome(False, last_event)


def outcome_record(outcome: WorkerOutcome, timeout_s: float) -> dict[str, Any]:
    """The record of a worker that gave none: why."""
    if outcome.timed_out:
        where = ""
        if outcome.last_event:
            e = outcome.last_event
            where = f" during {e.get('phase')}" + (f" {e['run']}/{e['runs']}" if "run" in e else "")
            where += f" (step {e['step']}/{e['steps']})" if "step" in e else ""
        if outcome.phase_budget_s is not None:
            phase = (outcome.last_event or {}).get("phase", "a phase")
            return {
                "status": "timeout",
                "error": f"{phase} did not finish within its {outcome.phase_budget_s:.0f} s budget{where}; worker killed",
            }
        return {"status": "timeout", "error": f"no result within {timeout_s:.0f} s{where}; worker killed"}
    code = outcome.returncode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (possibly the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        reason = f"worker died from {name}{hint}"
    else:
        reason = f"worker exited with code {code} without a result"
    last = outcome.log_tail.strip().splitlines()[-1:] if outcome.log_tail.strip() else []
    return {"status": "error", "error": reason + (f": {last[0]}" if last else "")}


class ProbeServer:
    """A worker that loads one configuration once and runs its capacity probes, one per request.

    It stays until closed, or until it dies, times out or reports a probe that left memory behind;
    `alive` then turns false and the caller starts a fresh one for the next probe.
    """

    def __init__(self, key: str, job: dict[str, Any], job_path: Path, log_path: Path):
        self.key = key
        job_path.write_text(json.dumps(job))
        self._worker = WorkerProcess(probe_worker.child_prober, (str(job_path),), log_path, requests=True)
        self._closing = False

    @property
    def alive(self) -> bool:
        return not self._closing and self._worker.alive

    def probe(self, p: Scenario, timeout_s: float, on_event: Callable[[dict], None]) -> dict[str, Any]:
        """The probe's record, or one that says why the worker gave none (it is then closed)."""
        last_event = None
        deadline = time.monotonic() + timeout_s
        try:
            self._worker.send(p.to_dict())
        except OSError:
            return self._ended(last_event, False, timeout_s)
        try:
            while (event := self._worker.receive(deadline)) is not None:
                if "probe" in event:
                    if event.get("closing"):
                        self.close()
                    return event["probe"]
                last_event = event
                on_event(event)
        except DeadlinePassed:
            return self._ended(last_event, True, timeout_s)
        return self._ended(last_event, False, timeout_s)

    def _ended(self, last_event: dict | None, timed_out: bool, timeout_s: float) -> dict[str, Any]:
        self.close(wait_s=0.0)
        return outcome_record(self._worker.outcome(timed_out, last_event), timeout_s)

    def close(self, wait_s: float = 10.0) -> None:
        """Ask the worker to stop; kill it (and whatever it started) if it has not within `wait_s`."""
        if not self._closing:
            self._closing = True
            with contextlib.suppress(OSError):
                self._worker.send(None)
        self._worker.close(wait_s)


class ServerSlot:
    """Where one thread of searches keeps its probe server: the one of the configuration probed last."""

    def __init__(self) -> None:
        self.server: ProbeServer | None = None

    def server_for(self, key: str, start: Callable[[], ProbeServer]) -> ProbeServer:
        if self.server is None or self.server.key != key or not self.server.alive:
            self.close()
            self.server = start()
        return self.server

    def close(self, wait_s: float = 10.0) -> None:
        if self.server is not None:
            self.server.close(wait_s)
            self.server = None


def probe_servers_that_fit(environment: dict[str, Any], scenarios: list[Scenario]) -> int:
    """How many probe servers may share the card: as many as their largest budgets fit in its free memory
    (a capped allocator never takes more) and the cores can drive, up to MAX_PROBE_SERVERS. One where the
    driver does not report each process's own memory: what lies outside a worker's allocator could then
    not be told apart from its neighbours' (worker.outside_allocator), nor beside an unbudgeted search."""
    searches = [s for s in scenarios if s.search]
    free = environment.get("gpu_free_gib") or 0.0
    if not searches or not environment.get("gpu_process_memory") or not free:
        return 1
    tops = [(s.search_max or free) if s.search == "min-budget" else s.vram_budget_gib for s in searches]
    if not all(tops):
        return 1
    cores = (environment.get("fingerprint") or {}).get("cpu_cores") or 1
    fit = int(0.9 * free // (max(tops) + PROBE_SERVER_MARGIN_GIB))
    return max(1, min(MAX_PROBE_SERVERS, cores // CORES_PER_PROBE_SERVER, fit))


def stretches(todo: list[Scenario], side_by_side: bool) -> list[list[list[Scenario]]]:
    """The run (in `run_order`) in stretches of groups, each group run in turn by one thread and the
    groups of a stretch side by side: the consecutive searches, one group per configuration, when
    `side_by_side`; every other scenario alone. Without `side_by_side`, one group of everything."""
    if not side_by_side:
        return [[todo]] if todo else []
    out: list[list[list[Scenario]]] = []
    for searching, run in itertools.groupby(todo, key=lambda s: bool(s.search)):
        if searching:
            out.append([list(group) for _, group in itertools.groupby(run, key=search_configuration)])
        else:
            out.extend([[s]] for s in run)
    return out


class Runner:
    def __init__(
        self,
        run_dir: Path,
        environment: dict[str, Any],
        on_start: Callable[[int, int, Scenario], None] = lambda i, n, s: None,
        on_event: Callable[[Scenario, dict], None] = lambda s, e: None,
        on_done: Callable[[Scenario, dict], None] = lambda s, r: None,
        timeout_s: float | None = None,
        threads: int | None = None,
        probe_servers: int = 1,
    ):
        self.store = ResultsStore(run_dir)
        self.work_dir = self.store.run_dir / "work"  # jobs and results passed to and from workers
        self.logs = self.store.run_dir / "logs"  # what each worker printed
        self.environment = environment
        self.on_start, self.on_event, self.on_done = on_start, on_event, on_done
        self.timeout_s = timeout_s
        self.threads = threads
        self.probe_servers = probe_servers
        self.ledger = capacity.Ledger()
        # the threads of searches side by side share the store and the callbacks, one at a time
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._slots: set[ServerSlot] = set()
        self._started = 0
        self._total = 0

    def run(self, scenarios: list[Scenario]) -> list[dict[str, Any]]:
        """Run what is not done yet; returns the CSV rows of this invocation, in the order they finished."""
        self.store.open()
        self.work_dir.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        earlier = self.store.records()
        done = {r["scenario"]["name"] for r in earlier}
        for record in earlier:
            self.ledger.learn(record)
        todo = run_order([s for s in scenarios if s.name not in done])
        self._started, self._total = 0, len(todo)
        self._stopping.clear()
        rows: list[dict[str, Any]] = []
        for stretch in stretches(todo, self.probe_servers > 1):
            if len(stretch) == 1:
                self._run_in_turn(stretch[0], rows)
            else:
                self._run_side_by_side(stretch, rows)
        return rows

    def _run_in_turn(self, group: list[Scenario], rows: list[dict[str, Any]]) -> None:
        """One scenario after another, the searches' probes from one slot's server."""
        slot = ServerSlot()
        with self._lock:
            self._slots.add(slot)
        try:
            for scenario in group:
                if self._stopping.is_set():
                    return
                with self._lock:
                    self._started += 1
                    self.on_start(self._started, self._total, scenario)
                record = self.record_of(scenario, slot)
                with self._lock:
                    if self._stopping.is_set():  # cut short by the stop: --resume runs it again
                        return
                    rows.append(self.store.append(record))
                    self.on_done(scenario, record)
        finally:
            with self._lock:
                self._slots.discard(slot)
            slot.close()

    def _run_side_by_side(self, groups: list[list[Scenario]], rows: list[dict[str, Any]]) -> None:
        """Each group in its own thread, up to `probe_servers` at once. On an interrupt every server is
        killed and what was in flight is dropped, not recorded as failed."""
        pool = ThreadPoolExecutor(max_workers=self.probe_servers, thread_name_prefix="searches")
        futures = [pool.submit(self._run_in_turn, group, rows) for group in groups]
        try:
            for future in as_completed(futures):
                future.result()
        except BaseException:
            self._stopping.set()
            with self._lock:
                slots = list(self._slots)
            for slot in slots:
                slot.close(wait_s=0.0)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def record_of(self, scenario: Scenario, slot: ServerSlot) -> dict[str, Any]:
        """The scenario's one record, whatever happens: skipped, searched, or timed in fresh workers."""
        started = time.time()
        timeout = self.timeout_s or scenario.timeout_s
        skip = skip_reason(scenario)
        if skip:
            body: dict[str, Any] = {"status": "skipped", "error": skip}
        elif scenario.search:
            body = self.search(scenario, timeout, slot)
        else:
            body = self.timed_record(scenario, timeout)
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.environment["run_id"],
            "scenario": scenario.to_dict(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_s": time.time() - started,
            **body,
            "fingerprint": self.environment.get("fingerprint", {}),
        }

    def timed_record(self, scenario: Scenario, timeout: float) -> dict[str, Any]:
        """`scenario.processes` fresh workers, one after another (each with the whole timeout): one
        record of them all (suite.processes), or one that says why there is none."""
        n = scenario.processes
        job_path = self.work_dir / f"{scenario.name}.job.json"
        result_path = self.work_dir / f"{scenario.name}.result.json"
        records = []
        for i in range(n):

            def relay(e: dict[str, Any], i: int = i) -> None:
                self._event(scenario, {**e, "process": i + 1, "processes": n} if n > 1 else e)

            log = self.logs / (f"{scenario.name}.log" if i == 0 else f"{scenario.name}.p{i + 1}.log")
            result_path.unlink(missing_ok=True)
            job_path.write_text(json.dumps({**self._job(scenario), "process": i, "result": str(result_path)}))
            outcome = run_process(worker.child_main, (str(job_path),), log, timeout, relay)
            finished = result_path.exists() and not outcome.timed_out
            records.append(json.loads(result_path.read_text()) if finished else outcome_record(outcome, timeout))
            if records[-1]["status"] != "ok" or self._stopping.is_set():
                break
        return processes.merge(records, n)

    def search(self, scenario: Scenario, timeout: float, slot: ServerSlot) -> dict[str, Any]:
        """A capacity search, its probes answered by the probe server of their configuration."""

        def probe(probe_scenario: Scenario) -> dict[str, Any]:
            if self._stopping.is_set():  # no fresh server once the run is stopping: the search ends here
                return {"status": "error", "error": "the run was stopped"}
            label = probe_scenario.name.rsplit(".probe-", 1)[1]
            self._event(scenario, {"phase": f"probe {label}"})
            record = self.probe_record(probe_scenario, scenario, timeout, slot)
            verdict = {"ok": "fits", "oom": "out of memory"}.get(record["status"], record["status"])
            self._event(scenario, {"phase": f"probe {label}: {verdict}"})
            return record

        device_gib = self.environment.get("fingerprint", {}).get("gpu_vram_gib") or None
        body = capacity.search(scenario, probe, device_gib, self.ledger)
        if "capacity" in body:
            body["capacity"]["probe_servers"] = self.probe_servers
        return body

    def probe_record(self, p: Scenario, search: Scenario, timeout: float, slot: ServerSlot) -> dict[str, Any]:
        """One probe, from the slot's server if it serves this configuration, else from a fresh one."""
        key = capacity.configuration(p)
        server = slot.server_for(
            key,
            lambda: ProbeServer(
                key,
                {**self._job(p), "side_by_side": self.probe_servers > 1},
                self.work_dir / f"{p.name}.job.json",
                self.logs / f"{p.name}.log",
            ),
        )
        record = server.probe(p, timeout, lambda e: self._event(search, e))
        if p.probe_isolation == "process":
            slot.close()
        return record

    def _event(self, scenario: Scenario, event: dict[str, Any]) -> None:
        with self._lock:
            self.on_event(scenario, event)

    def _job(self, scenario: Scenario) -> dict[str, Any]:
        """What a worker needs besides its scenario: where the run lives, the machine's peaks, threads."""
        return {
            "scenario": scenario.to_dict(),
            "run_dir": str(self.store.run_dir),
            "peak_tflops": self.environment.get("peak_tflops", {}),
            "threads": self.threads,
        }


def run_order(scenarios: list[Scenario]) -> list[Scenario]:
    """The run's order: the capacity searches of one configuration one after another, where the first
    of them stood (one probe server then serves them all); every other scenario where it stands."""
    first: dict[str, int] = {}
    keyed = []
    for index, s in enumerate(scenarios):
        key = search_configuration(s) if s.search else f"#{index}"
        keyed.append((first.setdefault(key, index), index, s))
    return [s for *_, s in sorted(keyed, key=lambda k: k[:2])]


def search_configuration(s: Scenario) -> str:
    """The configuration a search probes (one probe server serves every search of it)."""
    return capacity.configuration(capacity.probe_scenario(s, 1))


def skip_reason(scenario: Scenario) -> str | None:
    """Why the scenario cannot run on this machine at all, decided without starting a worker."""
    from suite.pipelines import NotApplicable, check_applicable

    try:
        check_applicable(scenario)
    except NotApplicable as exc:
        return str(exc)
    return None


def measure_machine(run_dir: Path, timeout_s: float = 300.0) -> dict[str, Any]:
    """Fingerprint and peak rates, measured in a worker so this process never holds a CUDA context."""
    out = run_dir / "work" / "machine.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    outcome = run_process(worker.child_measure_machine, (str(out),), run_dir / "work" / "machine.log", timeout_s)
    if not out.exists():
        raise RuntimeError(f"measuring the machine failed (exit {outcome.returncode}): {outcome.log_tail}")
    return json.loads(out.read_text())

"""Run scenarios, each in its own worker process, and keep every outcome.

The runner never imports a model or creates a CUDA context: it decides what cannot run here
(`skipped`), starts `python -m suite.worker` per scenario with a timeout, turns whatever
happens to the worker (a record, a crash, a hang) into exactly one record, and appends it to the
results store before starting the next. Workers die with the runner (PR_SET_PDEATHSIG), so a
`kill -9` of the runner leaves no orphan holding the GPU, and `--resume` continues the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.results import SCHEMA_VERSION, ResultsStore
from suite.scenario import Scenario
from suite.worker import PROGRESS_PREFIX

LOG_TAIL_LINES = 15


def _die_with_parent() -> None:
    """Runs in the worker between fork and exec: SIGKILL it when the runner dies."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class WorkerOutcome:
    result: dict[str, Any] | None
    returncode: int | None
    timed_out: bool
    log_tail: str


def _read_lines(stream, sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def run_worker(
    job: dict[str, Any], work_dir: Path, log_path: Path, timeout_s: float, on_event: Callable[[dict], None]
) -> WorkerOutcome:
    """Start one worker, relay its progress, enforce the timeout, and collect its result file."""
    job_path = work_dir / f"{job['scenario']['name']}.job.json"
    result_path = work_dir / f"{job['scenario']['name']}.result.json"
    result_path.unlink(missing_ok=True)
    job_path.write_text(json.dumps({**job, "result": str(result_path)}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suite.worker", str(job_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        timed_out = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                break
            try:
                line = lines.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if line is None:
                break
            if line.startswith(PROGRESS_PREFIX):
                on_event(json.loads(line[len(PROGRESS_PREFIX) :]))
            else:
                log.write(line)
        proc.wait()
        with contextlib.suppress(ProcessLookupError):  # the worker's sampler is in its session
            os.killpg(proc.pid, signal.SIGKILL)
    result = json.loads(result_path.read_text()) if result_path.exists() and not timed_out else None
    tail = "\n".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:])
    return WorkerOutcome(result, proc.returncode, timed_out, tail)


def outcome_record(outcome: WorkerOutcome, timeout_s: float) -> dict[str, Any]:
    """The worker's record, or one that says why there is none."""
    if outcome.result is not None:
        return outcome.result
    if outcome.timed_out:
        return {"status": "timeout", "error": f"no result within {timeout_s:.0f} s; worker killed"}
    code = outcome.returncode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (possibly the kernel's out-of-memory killer)" if name == "SIGKILL" else ""
        reason = f"worker died from {name}{hint}"
    else:
        reason = f"worker exited with code {code} without a result"
    last = outcome.log_tail.strip().splitlines()[-1:] if outcome.log_tail.strip() else []
    return {"status": "error", "error": reason + (f": {last[0]}" if last else "")}


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
    ):
        self.store = ResultsStore(run_dir)
        self.environment = environment
        self.on_start, self.on_event, self.on_done = on_start, on_event, on_done
        self.timeout_s = timeout_s
        self.threads = threads

    def run(self, scenarios: list[Scenario]) -> list[dict[str, Any]]:
        """Run what is not done yet; returns the CSV rows of this invocation, in order."""
        self.store.open()
        work_dir = self.store.run_dir / "work"
        logs = self.store.run_dir / "logs"
        work_dir.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        done = self.store.done()
        todo = [s for s in scenarios if s.name not in done]
        rows = []
        for index, scenario in enumerate(todo, 1):
            self.on_start(index, len(todo), scenario)
            record = self.run_one(scenario, work_dir, logs)
            rows.append(self.store.append(record))
            self.on_done(scenario, record)
        return rows

    def run_one(self, scenario: Scenario, work_dir: Path, logs: Path) -> dict[str, Any]:
        started = time.time()
        timeout = self.timeout_s or scenario.timeout_s
        skip = skip_reason(scenario)
        if skip:
            body: dict[str, Any] = {"status": "skipped", "error": skip}
        else:
            job = {
                "scenario": scenario.to_dict(),
                "run_dir": str(self.store.run_dir),
                "peak_tflops": self.environment.get("peak_tflops", {}),
                "threads": self.threads,
            }
            outcome = run_worker(
                job, work_dir, logs / f"{scenario.name}.log", timeout, lambda e: self.on_event(scenario, e)
            )
            body = outcome_record(outcome, timeout)
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.environment["run_id"],
            "scenario": scenario.to_dict(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_s": time.time() - started,
            **body,
            "fingerprint": self.environment.get("fingerprint", {}),
        }


def skip_reason(scenario: Scenario) -> str | None:
    """Why the scenario cannot run on this machine at all, decided without starting a worker."""
    from suite.pipelines import NotApplicable, check_applicable

    try:
        check_applicable(scenario)
    except NotApplicable as exc:
        return str(exc)
    return None


def probe_machine(run_dir: Path, timeout_s: float = 300.0) -> dict[str, Any]:
    """Fingerprint and peak rates, measured in a worker so this process never holds a CUDA context."""
    out = run_dir / "work" / "probe.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "suite.worker", "--probe", str(out)],
        check=True,
        timeout=timeout_s,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())

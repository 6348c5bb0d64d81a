"""What one probe server per configuration saves over a fresh worker per capacity probe.

Full-size SD v1 with synthetic weights on this CPU, 64x64 images, 2 steps: the probes differ in
batch as a max-batch search's do. Budgets are emulated on CUDA only, so none applies here; what is
measured is the cost around each probe (process, pipeline build, warm-up), which is what the server
removes. Run with `make bench-micro`; the figures are in the benchmark's extra_info.
"""

import time
from dataclasses import replace

from support import cpu_probe

from suite import runner
from suite.capacity import configuration
from suite.scenario import Scenario

PROBES = 3
FIRST = cpu_probe("synthetic", sampler="ddim")


def _probes() -> list[Scenario]:
    return [replace(FIRST, name=f"s.probe-{b}", batch=b) for b in range(1, PROBES + 1)]


def _serve(tmp_path, probes: list[Scenario], fresh: bool) -> float:
    """Seconds for all probes, from one server or from a fresh one each."""
    start = time.perf_counter()
    server = None
    for p in probes:
        if server is None:
            job = {"scenario": p.to_dict()}
            server = runner.ProbeServer(configuration(p), job, tmp_path / "job.json", tmp_path / f"{p.name}.log")
        assert server.probe(p, 600, lambda e: None)["status"] == "ok"
        if fresh:
            server.close()
            server = None
    if server is not None:
        server.close()
    return time.perf_counter() - start


def test_one_probe_server_costs_a_fraction_of_fresh_workers(benchmark, tmp_path):
    """Target: the server's probes take under half the time of fresh workers'."""
    fresh = _serve(tmp_path, _probes(), fresh=True)
    served = benchmark.pedantic(lambda: _serve(tmp_path, _probes(), fresh=False), rounds=1, iterations=1)
    benchmark.extra_info.update(fresh_s_per_probe=fresh / PROBES, served_s_per_probe=served / PROBES)
    print(f"\n{PROBES} probes: fresh workers {fresh:.1f} s, one server {served:.1f} s ({fresh / served:.1f}x)")
    assert served < 0.5 * fresh

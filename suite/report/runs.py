"""A bench run as the report sees it: its environment, its records and their flat rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.results import flatten, load_environment, load_records


@dataclass
class Run:
    path: Path
    environment: dict[str, Any]
    records: list[dict[str, Any]]

    @property
    def label(self) -> str:
        """Short name of the run in charts: its id, plus the GPU or CPU it ran on."""
        fp = self.environment.get("fingerprint") or {}
        machine = fp.get("gpu") or fp.get("cpu") or "unknown machine"
        return f"{self.environment.get('run_id', self.path.name)} · {machine}"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [flatten(r) for r in self.records]

    @property
    def weight_sources(self) -> list[str]:
        return sorted({(r.get("weights") or {}).get("source", "") for r in self.records} - {""})


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not (path / "results.jsonl").exists():
        raise FileNotFoundError(f"{path}: not a bench run directory (no results.jsonl)")
    return Run(path, load_environment(path), load_records(path))

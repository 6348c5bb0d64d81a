"""A bench run as the report sees it: its environment and its typed records."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.record import Record
from suite.results import ResultsStore, load_environment


@dataclass
class Run:
    path: Path
    environment: dict[str, Any]
    records: list[Record]

    def __post_init__(self) -> None:
        """Records given as JSON (as results.jsonl holds them) are typed here."""
        self.records = [r if isinstance(r, Record) else Record.from_json(r) for r in self.records]

    @property
    def label(self) -> str:
        """Short name of the run in charts: its id, plus the GPU or CPU it ran on."""
        fp = self.environment.get("fingerprint") or {}
        machine = fp.get("gpu") or fp.get("cpu") or "unknown machine"
        return f"{self.environment.get('run_id', self.path.name)} · {machine}"

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.records]

    @property
    def weight_sources(self) -> list[str]:
        return sorted({(r.weights or {}).get("source", "") for r in self.records} - {""})

    def by_name(self, keep=lambda r: True) -> Mapping[str, Record]:
        """The records that `keep` keeps, by scenario name."""
        return {r.name: r for r in self.records if keep(r)}


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not (path / "results.jsonl").exists():
        raise FileNotFoundError(f"{path}: not a bench run directory (no results.jsonl)")
    return Run(path, load_environment(path), ResultsStore(path).typed_records())

"""Shard tasks that kill their worker process, for the fault tests (importable by spawned workers).

Dask's workers find this module through PYTHONPATH (the tests set it to this folder before the
cluster starts; a local pool's workers get the tests' sys.path). A shard's first death is
remembered in a file beside the shard. Each wrapper runs the real task, suite.audit.shards.audit_shard.
"""

from __future__ import annotations

import os
from typing import Any

from suite.audit.shards import ShardJob, audit_shard


def _first_time(shard_url: str) -> bool:
    try:
        with open(f"{shard_url}.died", "x"):
            return True
    except FileExistsError:
        return False


def killing_task(shard_url: str, job: ShardJob) -> dict[str, Any]:
    """`poison*` shards kill their worker every time; `die-before*` once before auditing and
    `die-after*` once after committing (the retry must find the committed output)."""
    name = os.path.basename(shard_url)
    if name.startswith("poison") or (name.startswith("die-before") and _first_time(shard_url)):
        os._exit(1)
    outcome = audit_shard(shard_url, job)
    if name.startswith("die-after") and _first_time(shard_url):
        os._exit(1)
    return outcome

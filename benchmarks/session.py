"""One benchmark run's results file, progress log and clock, shared by every suite.

The JSON (and the results README rendered from the folder) is rewritten after every
case, so a run killed halfway (a lent GPU machine taken back) still leaves artifacts.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.table import write_readme


class Session:
    """`result` is the JSON document; suites add their rows to it and call save()."""

    def __init__(self, path: Path, result: dict, start: float):
        self.path, self.result, self.start = path, result, start

    def elapsed(self) -> float:
        """Seconds since start-up (a JIT build of fastgan counts against the budget)."""
        return time.monotonic() - self.start

    def log(self, text: str) -> None:
        print(f"[{self.elapsed():6.1f}s] {text}", flush=True)

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.result, indent=1))
        tmp.replace(self.path)
        write_readme(self.path.parent)

    def may_start(self, index: int, deadline: float) -> bool:
        """A suite always runs its first (most important) case; later ones only before its deadline."""
        return index == 0 or self.elapsed() < deadline

    def skip_note(self, deadline: float) -> str:
        return f"skipped: the suite's time budget (until {deadline:.0f} s into the run) was spent"

"""The run's ``metrics.jsonl`` (always written; the trackers of ``report_to=`` are in :mod:`.trackers`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl``.

    On resume from step N, rows with ``step > N`` (written after the checkpoint by the interrupted run)
    are dropped first, so the file reads as if the run had never stopped.
    """

    def __init__(self, output_dir: str | Path, resume_step: int | None, enabled: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"
        self.enabled = enabled
        if not enabled:
            return
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [json.dumps(row) for row in parse_metrics(self.path) if row.get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        pass


class MetricsFileError(ValueError):
    """A ``metrics.jsonl`` line that is not a JSON object (the message names the file and line)."""


def parse_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``. A last line that does not parse is dropped: it is a row whose
    write was cut off (the process killed mid-line), and resume rewrites the file without it. Any other
    line that is not a JSON object raises :class:`MetricsFileError`."""
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    rows = []
    for k, (i, line) in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            if k == len(lines) - 1 and row is None:
                break
            raise MetricsFileError(f"{path}: line {i}: not a JSON object of metrics")
        rows.append(row)
    return rows


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of ``path`` (a ``metrics.jsonl`` or the run directory that holds one)."""
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    return parse_metrics(p)

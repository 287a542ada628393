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
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _clean(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        pass


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if p.is_dir():
        p = p / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

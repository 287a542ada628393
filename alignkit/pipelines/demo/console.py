"""What the demo prints while it runs: stage lines, progress, and a wall/CPU clock per stage."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Say:
    """Stage lines on ``out`` (flushed at once, so piped logs stay in order with the progress lines)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, msg: str = "") -> None:
        print(msg, file=self.out, flush=True)


class Progress:
    """A tqdm bar on a terminal (stderr); without one, a line on ``say`` every ``every`` seconds."""

    def __init__(self, say: Say, total: int, desc: str, unit: str, every: float = 20.0) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"    {desc}", unit=unit, leave=False, disable=None,
                        file=sys.stderr, dynamic_ncols=True)
        self.say, self.total, self.desc, self.unit, self.every = say, total, desc, unit, every
        self.done = 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        now = time.perf_counter()
        if self.bar.disable and (now - self.last >= self.every or self.done >= self.total):
            self.last = now
            self.say(f"    {self.desc}: {self.done}/{self.total} {self.unit}s ({now - self.t0:.0f} s)")

    def close(self) -> None:
        self.bar.close()


class Clock:
    """Wall and CPU time per stage (CPU time of this process, all its threads)."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.t, self.c = self.t0, self.c0

    def start(self) -> None:
        self.t, self.c = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        """Wall seconds since :meth:`start`."""
        return time.perf_counter() - self.t

    def stop(self, name: str) -> float:
        self.stages[name] = {"wall_s": round(time.perf_counter() - self.t, 1),
                             "cpu_s": round(time.process_time() - self.c, 1)}
        return self.stages[name]["wall_s"]

    def total(self) -> dict[str, dict[str, float]]:
        return {**self.stages, "total": {"wall_s": round(time.perf_counter() - self.t0, 1),
                                         "cpu_s": round(time.process_time() - self.c0, 1)}}

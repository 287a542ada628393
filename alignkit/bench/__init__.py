"""``alignkit bench``: alignkit against a peer (TRL) on the same model, data and settings, in one run.

Each side runs in its own child process, one after the other, so that wall time and peak memory
(``ru_maxrss`` of that process) cover everything a user would wait for: imports, model load, data
preparation, training. The child prints one JSON line with its figures; the parent prints a table
and the ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULT_PREFIX = "ALIGNKIT_BENCH_RESULT "


def emit_result(result: dict) -> None:
    """Called in a child: report figures to the parent (peak RSS of this process added here)."""
    import resource

    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(module: str, args: dict, log_path: Path) -> dict:
    """Run ``python -m module --args JSON`` and return its result with the parent-side wall time."""
    cmd = [sys.executable, "-m", module, "--args", json.dumps(args)]
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    wall = time.perf_counter() - t0
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{module} failed (exit {proc.returncode}); see {log_path}")
    result["wall_s"] = wall
    return result


def format_table(rows: list[tuple[str, dict]], keys: list[tuple[str, str]]) -> str:
    """Rows of (name, figures) as an aligned text table; ``keys`` = [(key, header)]."""
    header = f"{'':<10}" + "".join(f"{h:>16}" for _, h in keys)
    lines = [header]
    for name, fig in rows:
        cells = []
        for k, _ in keys:
            v = fig.get(k)
            cells.append(f"{v:>16.4f}" if isinstance(v, float) else f"{str(v):>16}")
        lines.append(f"{name:<10}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="alignkit bench",
        description="Side-by-side speed and memory against TRL (needs `pip install alignkit[bench]`).",
    )
    sub = p.add_subparsers(dest="which", required=True)
    dpo = sub.add_parser("dpo", help="alignkit dpo vs TRL DPOTrainer")
    dpo.add_argument("--model", default="smollm2-135m")
    dpo.add_argument("--steps", type=int, default=12)
    dpo.add_argument("--batch-size", type=int, default=4)
    dpo.add_argument("--max-length", type=int, default=256)
    dpo.add_argument("--lora-r", type=int, default=16)
    dpo.add_argument("--output-dir", default="runs/bench-dpo")
    dpo.add_argument("--only", choices=["alignkit", "trl"], default=None, help="run one side only")
    grpo = sub.add_parser("grpo", help="alignkit grpo vs TRL GRPOTrainer")
    grpo.add_argument("--model", default="smollm2-135m")
    grpo.add_argument("--steps", type=int, default=4)
    grpo.add_argument("--output-dir", default="runs/bench-grpo")
    grpo.add_argument("--only", choices=["alignkit", "trl"], default=None)
    args = p.parse_args(argv)
    if args.which == "dpo":
        from alignkit.bench.dpo import run

        return run(args)
    try:
        from alignkit.bench.grpo import run
    except ImportError:
        print("alignkit bench grpo: not available yet in this version.", file=sys.stderr)
        return 2
    return run(args)

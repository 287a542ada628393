"""``alignkit report RUN_DIR [RUN_DIR ...] [--output FILE.html]``: plot runs.

One run: (re)writes RUN_DIR/report.html (self-contained: plots embedded as PNG) and RUN_DIR/plots/*.png
from its metrics.jsonl, with its eval results when RUN_DIR/results.json or RUN_DIR/eval/results.json
exists (``alignkit eval --model RUN_DIR`` writes the latter). Several runs: one comparison page with
overlaid curves for every metric at least two runs logged, and tables of final metrics and eval results
side by side (default output: ./alignkit-comparison.html).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignkit.files import output_path_problem

DEFAULT_COMPARISON = "alignkit-comparison.html"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="alignkit report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (with metrics.jsonl)")
    p.add_argument("--output", default=None, metavar="FILE.html",
                   help=f"where to write the page (one run: RUN_DIR/report.html; several: {DEFAULT_COMPARISON})")
    try:
        args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0)
    problem = output_path_problem(args.output, "--output")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not r.is_dir():
            print(f"error: {r}: no such run directory", file=sys.stderr)
            return 2
        if not (r / "metrics.jsonl").is_file():
            print(f"error: {r}: not a run directory (no metrics.jsonl)", file=sys.stderr)
            return 2
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("error: plots need matplotlib: pip install 'alignkit[report]'", file=sys.stderr)
        return 2

    from alignkit.engine.logging import MetricsFileError

    try:
        return _write(runs, args.output)
    except MetricsFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _write(runs: list[Path], output: str | None) -> int:
    from alignkit.report import write_comparison_report, write_run_report

    if len(runs) == 1:
        out = write_run_report(runs[0], output)
        if out is None:
            print(f"error: {runs[0]}: metrics.jsonl holds no numeric metrics to plot", file=sys.stderr)
            return 2
        print(f"report: {out} (plots in {runs[0] / 'plots'})")
        return 0
    out = write_comparison_report(runs, output or DEFAULT_COMPARISON)
    print(f"comparison of {len(runs)} runs: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``alignkit weak-to-strong``: a weak reward model labels pairs, a strong one learns from those labels;
prints the accuracies and the performance gap recovered (see :mod:`alignkit.pipelines.weak_to_strong`)."""

from __future__ import annotations

import argparse
import json
import sys

from alignkit.files import output_path_problem


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignkit weak-to-strong", description=__doc__.split("\n")[0])
    p.add_argument("--weak", required=True, help="weak base model (e.g. tiny-random or a small model)")
    p.add_argument("--strong", required=True, help="strong base model (e.g. smollm2-135m)")
    p.add_argument("--train", required=True, help="gold preference pairs (split in two halves)")
    p.add_argument("--eval", required=True, help="held-out gold preference pairs")
    p.add_argument("--aux-alpha", type=float, default=0.5, help="auxiliary confidence weight (default 0.5; 0: off)")
    p.add_argument("--output-dir", required=True, help="run directories and weak_to_strong.json go here")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="rm keys for every run (lr=, max_steps=, lora.r=)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0)
    problem = output_path_problem(args.output_dir, "--output-dir", directory=True)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if not 0 <= args.aux_alpha <= 1:
        print("error: --aux-alpha must be between 0 and 1", file=sys.stderr)
        return 2
    from alignkit.config import ConfigError
    from alignkit.data import DataError
    from alignkit.models import ModelNotFoundError
    from alignkit.pipelines.weak_to_strong import WeakToStrongOptions, run_weak_to_strong

    opts = WeakToStrongOptions(args.weak, args.strong, args.train, args.eval, args.output_dir, args.aux_alpha,
                               list(args.overrides))
    try:
        result = run_weak_to_strong(opts)
    except (ConfigError, DataError, ModelNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

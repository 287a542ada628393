"""``alignkit compare``: the base model, ICL with each selector and k, BPO, Aligner and trained runs,
side by side on the same eval prompts (see :mod:`alignkit.pipelines.compare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignkit.commands.sampling import BATCH_SIZE_HELP, batch_size_arg
from alignkit.files import output_path_problem


def _ints(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    from alignkit.inference.icl import SELECTORS

    p = argparse.ArgumentParser(prog="alignkit compare", description=__doc__.split("\n")[0] + " Quality is the gold "
                                "prompt-level pass rate of the instruction set with a 95%% Wilson interval; costs "
                                "are prompt and generated tokens per query, seconds per query and training time.")
    p.add_argument("--model", default="smollm2-135m", help="the base model (default smollm2-135m)")
    p.add_argument("--train", default=None, metavar="FILE",
                   help="ICL examples (prompt-completion, preference or messages rows); without it no ICL variants")
    p.add_argument("--eval", default=None, metavar="FILE", help="instruction file (default: the shipped set)")
    p.add_argument("--split", default="test", help="split of the instruction file (default test)")
    p.add_argument("--selectors", default="bm25,jaccard,embedding",
                   help=f"ICL selectors, comma-separated, of {', '.join(SELECTORS)} (default bm25,jaccard,embedding)")
    p.add_argument("--ks", type=_ints, default=[1, 4, 8], help="ICL example counts (default 1,4,8)")
    p.add_argument("--icl-max-tokens", type=int, default=None, help="token budget of an ICL prompt")
    p.add_argument("--prompt-optimizer", default=None, metavar="PATH", help="a BPO model (alignkit bpo)")
    p.add_argument("--aligner", default=None, metavar="PATH", help="an Aligner model (alignkit aligner)")
    p.add_argument("--aid-max-new-tokens", type=int, default=256,
                   help="length limit of the optimizer's rewrites and the corrector's answers (default 256)")
    p.add_argument("--run", action="append", default=[], metavar="DIR", help="a trained run directory (repeatable)")
    p.add_argument("--safety", nargs="?", const="default", default=None, metavar="FILE",
                   help="also ask safety prompts (the shipped test split, or FILE with prompt + kind): harmful "
                   "compliance and over-refusal columns")
    p.add_argument("--judge", default=None, metavar="SPEC",
                   help="a pairwise judge (judge:MODEL[?method=...], judge:http://HOST:PORT/v1, rm:PATH, "
                   "FILE.py:FUNC): each variant's win rate vs the base model, both orders, 95%% bootstrap interval "
                   "(the quality column for prompts without checkers)")
    p.add_argument("--limit", type=int, default=None, help="only the first N eval prompts")
    p.add_argument("--max-new-tokens", type=int, default=256, help="answer length limit (default 256)")
    p.add_argument("--batch-size", type=batch_size_arg, default=None, metavar="N|auto", help=BATCH_SIZE_HELP)
    p.add_argument("--output-dir", default="compare-results", help="where compare.json/.md/.png go")
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
    from alignkit.evaluation.runner import EvalOptions
    from alignkit.inference.icl import SELECTORS
    from alignkit.pipelines.compare import CompareOptions, run_compare, table, write_outputs

    selectors = [s.strip() for s in args.selectors.split(",") if s.strip()]
    bad = [s for s in selectors if s not in SELECTORS]
    if bad:
        print(f"error: unknown selector(s) {', '.join(bad)}; valid: {', '.join(SELECTORS)}", file=sys.stderr)
        return 2
    for flag, path in (("--train", args.train), ("--eval", args.eval), *(("--run", r) for r in args.run)):
        if path and not Path(path).exists():
            print(f"error: {flag} {path}: not found", file=sys.stderr)
            return 2
    ev = EvalOptions(prompts=args.eval, split=args.split, limit=args.limit, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size, icl_max_tokens=args.icl_max_tokens,
                     aid_max_new_tokens=args.aid_max_new_tokens)
    opts = CompareOptions(model=args.model, train=args.train, selectors=selectors, ks=args.ks,
                          prompt_optimizer=args.prompt_optimizer, aligner=args.aligner, runs=args.run, eval=ev,
                          safety=args.safety, judge=args.judge)
    from alignkit.data import DataError
    from alignkit.evaluation import InstructionFileError
    from alignkit.models import ModelNotFoundError

    try:
        rows = run_compare(opts)
    except (InstructionFileError, DataError, ModelNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = write_outputs(rows, args.output_dir)
    from alignkit.evaluation.tables import markdown_table

    headers, body = table(rows)
    print(markdown_table(headers, body))
    print(f"results: {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

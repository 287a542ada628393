"""``alignkit data BUILDER ...``: build training data with AI feedback (the README's data formats).

Builders:

``backtranslate``    unlabelled texts -> prompt-completion rows (instruction backtranslation: the model
                     proposes the instruction each text answers, rates the pair 1-5, keeps the best)
``critique-revise``  prompts -> preference rows (the model answers, critiques its answer against a
                     principle, revises; chosen = revised, rejected = original)
``rlaif``            prompts -> preference rows (candidates from --model, judged by --judge: best vs
                     worst with a pointwise judge, round robin with --pairwise)
``eft``              ranked answers (prompt, completion, score 0-5) -> judge-format prompt-completion
                     rows for evaluation fine-tuning
``math``             generated arithmetic word problems with step-by-step solutions and answers (no
                     model; ``alignkit.reasoning.mathset``), or a GSM8K-style file converted to that layout
``prm-labels``       math problems -> step-wise labels for ``alignkit prm``; ``step-pairs``: -> Step-DPO rows
                     (both from Monte-Carlo rollouts to the verifier, ``alignkit.commands.reasoning_data``)

Rows are written as chat messages (``--chat-template auto``, the default: what the model saw when it
generated them) or as plain strings (``--chat-template never``). Every output loads with
``alignkit.data.load_examples`` and trains directly (``alignkit sft`` / ``alignkit dpo``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alignkit.commands import reasoning_data

DESCRIPTION = """Build training data with AI feedback. Each builder writes a JSONL file in a README "Data formats" layout:

  backtranslate    texts -> prompt-completion rows (instruction backtranslation + 1-5 self-rating)
  critique-revise  prompts -> preference rows (answer, critique against a principle, revise)
  rlaif            prompts -> preference rows (candidates from --model judged by --judge)
  eft              ranked answers -> judge-format rows for evaluation fine-tuning
  math             generated multi-step arithmetic word problems (or --from-gsm8k FILE converted)
  safety           rows from the shipped safety set: prompts, safety preference pairs or safety labels
  redteam          an attacker rewrites harmful prompts until a target complies; the successes as safety data
  bpo              preference pairs -> (prompt, optimized_prompt, critique) rows for the BPO prompt optimizer
  distill          prompts -> SFT rows answered by a stronger teacher (local or an OpenAI-compatible endpoint)
  prm-labels       math problems -> step-wise PRM labels from Monte-Carlo rollouts (Math-Shepherd)
  step-pairs       math problems -> Step-DPO pairs (first wrong step vs a right continuation)

`alignkit data BUILDER --help` describes each."""


class UsageError(ValueError):
    pass


# ----------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser, model: bool = True, max_new_tokens: int = 256) -> None:
    p.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    if model:
        p.add_argument("--model", default="smollm2-135m",
                       help="model that generates: smollm2-135m (default), tiny-random, a model dir, a run dir "
                       "or a .gguf file")
        p.add_argument("--max-new-tokens", type=int, default=max_new_tokens,
                       help=f"generation length limit (default {max_new_tokens})")
        p.add_argument("--batch-size", type=int, default=8, help="sequences per generation batch (default 8)")
        p.add_argument("--seed", type=int, default=0, help="seed for sampling and random choices (default 0)")
        p.add_argument("--limit", type=int, default=None, help="use only the first N inputs")
        p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    p.add_argument("--chat-template", choices=["auto", "always", "never"], default="auto",
                   help="auto (default): prompts go through the chat template and rows are written as chat "
                   "messages; never: raw text and plain-string rows")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignkit data", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="builder", metavar="BUILDER")

    bt = sub.add_parser(
        "backtranslate", help="texts -> prompt-completion rows (instruction backtranslation)",
        description="Instruction backtranslation: for each unlabelled text the model proposes the instruction "
        "it answers, then a rater (the same model unless --rater) grades the (instruction, text) pair from 1 "
        "to 5 (final 'Score: N' line); pairs scoring at least --threshold are written as prompt-completion "
        "rows with their score.")
    bt.add_argument("--input", required=True,
                    help="texts: .txt (texts separated by blank lines) or a data file (.jsonl/.json/.csv/.parquet/"
                    "saved dataset) with a text field (--field)")
    bt.add_argument("--field", default=None,
                    help="field holding the text (default: the first of text, completion, response, output)")
    bt.add_argument("--threshold", type=float, default=4.0, help="keep pairs rated at least this (1-5, default 4)")
    bt.add_argument("--rater", default=None, help="model that rates the pairs (default: --model)")
    bt.add_argument("--rate-samples", type=int, default=1,
                    help="ratings per pair, averaged (default 1: greedy; more: sampled at --rate-temperature)")
    bt.add_argument("--rate-temperature", type=float, default=0.7, help="rating temperature when sampled")
    bt.add_argument("--temperature", type=float, default=0.0,
                    help="temperature of the instruction proposals (default 0: greedy)")
    bt.add_argument("--rate-max-new-tokens", type=int, default=128, help="rating length limit (default 128)")
    _common(bt, max_new_tokens=64)

    cr = sub.add_parser(
        "critique-revise", help="prompts -> preference rows (critique and revise)",
        description="Critique and revise: the model answers each prompt, critiques its answer against one "
        "principle (drawn with --seed from the shipped list or --principles), then revises it. Rows: prompt, "
        "chosen (the revision), rejected (the original answer), principle, critique. Rows whose revision is "
        "empty or unchanged are dropped.")
    cr.add_argument("--prompts", required=True, help="prompt file: a data file with a 'prompt' field, or .txt "
                    "with one prompt per line")
    cr.add_argument("--principles", default=None,
                    help="principles file: .txt one per line (# comments), .json list of strings, or .jsonl "
                    "rows {\"principle\": ...} (default: the shipped list)")
    cr.add_argument("--critique-max-new-tokens", type=int, default=128, help="critique length limit (default 128)")
    cr.add_argument("--temperature", type=float, default=0.0, help="generation temperature (default 0: greedy)")
    _common(cr)

    rl = sub.add_parser(
        "rlaif", help="prompts -> preference rows (candidates judged by another model)",
        description="RLAIF pairs: --candidates responses per prompt sampled from --model, judged by --judge. "
        "Pointwise (default): every candidate scored on the 0-5 rubric (--judge-samples averaged), chosen = "
        "best, rejected = worst. --pairwise: the candidates meet in a round robin under a pairwise judge "
        "(both orders asked), chosen = most wins. Ties, unparsable judgements and identical texts give no row.")
    rl.add_argument("--prompts", required=True, help="prompt file (as for critique-revise)")
    rl.add_argument("--judge", required=True,
                    help="judge spec: a model dir/name (judge:PATH), self (the --model itself), "
                    "http(s)://HOST:PORT/v1, rm:PATH or FILE.py:FUNC (see alignkit.judges)")
    rl.add_argument("--pairwise", action="store_true", help="use a pairwise judge (A vs B) instead of scores")
    rl.add_argument("--candidates", type=int, default=4, help="responses per prompt (default 4, at least 2)")
    rl.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    rl.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling threshold (default 0.9)")
    rl.add_argument("--judge-samples", type=int, default=3, help="judge samples per candidate (default 3)")
    rl.add_argument("--judge-temperature", type=float, default=0.7, help="judge temperature (default 0.7)")
    rl.add_argument("--judge-max-new-tokens", type=int, default=256, help="judge output limit (default 256)")
    rl.add_argument("--judge-force-score", action="store_true",
                    help="local judges: read a missing 'Score: N' from the judge's most likely score token")
    _common(rl)

    ef = sub.add_parser(
        "eft", help="ranked answers -> judge-format rows (evaluation fine-tuning)",
        description="Evaluation fine-tuning examples: each row (prompt, completion, score 0-5 [, justification]) "
        "becomes a prompt-completion row whose prompt is the pointwise judge's grading request and whose "
        "completion is the justification (a rubric-based one when missing) and a final 'Score: N' line.")
    ef.add_argument("--input", required=True, help="ranked data: rows prompt, completion, score (0-5), "
                    "optionally justification")
    _common(ef, model=False)

    ma = sub.add_parser(
        "math", help="generated arithmetic word problems with step-by-step solutions (no model)",
        description="Multi-step arithmetic word problems with a known integer answer and a reference solution "
        "('Step 1: ...' lines, then 'Answer: N'). Rows: prompt, completion, answer, steps, level, template "
        "(prompt-completion data for sft; prompt-only data with an answer column for grpo reward=math:answer). "
        "The train and test splits use disjoint story templates and seeds; the same arguments give the same "
        "file. --from-gsm8k converts a GSM8K-style file (question, answer ending in '#### N') instead.")
    ma.add_argument("--n", type=int, default=None,
                    help="number of problems (default 1000; with --from-gsm8k: every row)")
    ma.add_argument("--steps", default="2-4", help="operations per problem, a number or a range within 1-5 "
                    "(default 2-4)")
    ma.add_argument("--level", default="1", help="number sizes, a number or a range within 1-3 (default 1: "
                    "start values up to 20, results up to 200)")
    ma.add_argument("--split", choices=["train", "test"], default="train",
                    help="train (default) or test: disjoint templates and seeds")
    ma.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ma.add_argument("--from-gsm8k", default=None, metavar="FILE",
                    help="convert this GSM8K-style file instead of generating")
    ma.add_argument("--no-instruction", action="store_true",
                    help="leave the format instruction (Step k: ... / Answer: N) out of the prompts")
    ma.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    from alignkit.commands import safety_data

    safety_data.add_parser(sub)
    safety_data.add_redteam_parser(sub)
    from alignkit.commands import bpo_data

    bpo_data.add_parser(sub)
    bpo_data.add_distill_parser(sub)
    reasoning_data.add_parsers(sub, _common)
    return p


# ----------------------------------------------------------------------------- inputs


TEXT_FIELDS = ("text", "completion", "response", "output")


def read_texts(path: str, field: str | None) -> list[str]:
    """Unlabelled texts: paragraphs of a .txt file, or one field of a data file's rows."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"input file not found: {p}")
    if p.is_file() and p.suffix.lower() == ".txt":
        blocks = [b.strip() for b in p.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n")]
        texts = [b for b in blocks if b]
        if not texts:
            raise UsageError(f"{p}: no texts (the file is empty)")
        return texts
    from alignkit.data.io import DataError, read_rows

    rows = read_rows(p)
    if not rows:
        raise DataError("no rows", path=p)
    names = [field] if field else [f for f in TEXT_FIELDS if f in rows[0][1]]
    if not names:
        raise DataError(f"no text field: expected one of {', '.join(TEXT_FIELDS)} (or pass --field)", path=p,
                        row=rows[0][0])
    name = names[0]
    texts = []
    for row_no, row in rows:
        value = row.get(name)
        if isinstance(value, list) and value and isinstance(value[-1], dict):
            value = value[-1].get("content")
        if not isinstance(value, str) or not value.strip():
            raise DataError("expected a non-empty string", path=p, row=row_no, field=name)
        texts.append(value.strip())
    return texts


def _check(args: argparse.Namespace) -> None:
    if not str(args.output).endswith(".jsonl"):
        raise UsageError(f"--output must be a .jsonl file, got {args.output}")
    from alignkit.files import output_path_problem

    problem = output_path_problem(args.output, "--output")
    if problem:
        raise UsageError(problem)
    for name in ("max_new_tokens", "batch_size", "critique_max_new_tokens", "judge_max_new_tokens", "rate_max_new_tokens",
                 "rate_samples", "judge_samples"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if getattr(args, "limit", None) is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    for name in ("temperature", "judge_temperature", "rate_temperature"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0")
    if getattr(args, "top_p", None) is not None and not 0 < args.top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    if args.builder == "backtranslate" and not 1 <= args.threshold <= 5:
        raise UsageError(f"--threshold must be between 1 and 5, got {args.threshold}")
    if args.builder == "rlaif" and args.candidates < 2:
        raise UsageError("--candidates must be at least 2 (a pair needs two answers)")


def _limit(items: list, n: int | None) -> list:
    return items if n is None else items[:n]


# ----------------------------------------------------------------------------- builders


def _load_model(name: str, trust_remote_code: bool) -> tuple[Any, Any]:
    from transformers.utils import logging as hf_logging

    from alignkit.generation import texts as generation

    hf_logging.disable_progress_bar()
    return generation.load_generator(name, trust_remote_code=trust_remote_code)


def _run_backtranslate(args) -> tuple[list[dict], dict]:
    from alignkit.aifeedback.backtranslate import BacktranslateOptions, backtranslate

    texts = _limit(read_texts(args.input, args.field), args.limit)
    model, tok = _load_model(args.model, args.trust_remote_code)
    rater = _load_model(args.rater, args.trust_remote_code) if args.rater and args.rater != args.model else None
    opts = BacktranslateOptions(threshold=args.threshold, max_new_tokens=args.max_new_tokens,
                                temperature=args.temperature, rate_samples=args.rate_samples,
                                rate_temperature=args.rate_temperature, rate_max_new_tokens=args.rate_max_new_tokens,
                                seed=args.seed, batch_size=args.batch_size, chat_template=args.chat_template)
    return backtranslate(texts, model, tok, opts, rater=rater)


def _read_prompts(path: str) -> list:
    from alignkit.commands.generate import PromptFileError, read_prompts

    try:
        return read_prompts(path)
    except PromptFileError as e:
        raise UsageError(str(e)) from None


def _run_critique(args) -> tuple[list[dict], dict]:
    from alignkit.aifeedback.critique import (
        CritiqueOptions,
        PrinciplesError,
        critique_revise,
        load_principles,
    )

    try:
        principles = load_principles(args.principles)
    except PrinciplesError as e:
        raise UsageError(str(e)) from None
    prompts = _limit(_read_prompts(args.prompts), args.limit)
    model, tok = _load_model(args.model, args.trust_remote_code)
    opts = CritiqueOptions(max_new_tokens=args.max_new_tokens, critique_max_new_tokens=args.critique_max_new_tokens,
                           temperature=args.temperature, seed=args.seed, batch_size=args.batch_size,
                           chat_template=args.chat_template)
    return critique_revise(prompts, model, tok, principles, opts)


def _run_rlaif(args) -> tuple[list[dict], dict]:
    from alignkit.aifeedback import judging
    from alignkit.aifeedback.rlaif import RlaifOptions, rlaif_pairs
    from alignkit.scoring import parse_judge_spec

    parse_judge_spec(args.judge)  # a bad spec stops here, before any model loads
    prompts = _limit(_read_prompts(args.prompts), args.limit)
    model, tok = _load_model(args.model, args.trust_remote_code)
    common = dict(policy=model, tokenizer=tok, temperature=args.judge_temperature,
                  max_new_tokens=args.judge_max_new_tokens, seed=args.seed)
    if args.pairwise:
        judge = judging.load_pairwise(args.judge, **common)
    else:
        judge = judging.load_pointwise(args.judge, judge_samples=args.judge_samples,
                                       force_score=args.judge_force_score, **common)
    opts = RlaifOptions(candidates=args.candidates, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        top_p=args.top_p, seed=args.seed, batch_size=args.batch_size, chat_template=args.chat_template)
    return rlaif_pairs(prompts, model, tok, judge, opts, pairwise=args.pairwise)


def _run_eft(args) -> tuple[list[dict], dict]:
    from alignkit.aifeedback.eft import build_eft_examples, eft_rows

    rows = eft_rows(args.input)
    examples = build_eft_examples(rows, args.chat_template)
    return examples, {"rows": len(rows), "kept": len(examples)}


def _run_math(args) -> tuple[list[dict], dict]:
    from alignkit.reasoning.mathset import generate_problems, read_gsm8k

    if args.n is not None and args.n < 1:
        raise UsageError("--n must be at least 1")
    if args.from_gsm8k:
        rows = _limit(read_gsm8k(args.from_gsm8k, instruction=not args.no_instruction), args.n)
        return rows, {"source": args.from_gsm8k, "rows": len(rows)}
    try:
        rows = generate_problems(args.n or 1000, steps=args.steps, levels=args.level, split=args.split,
                                 seed=args.seed, instruction=not args.no_instruction)
    except ValueError as e:
        raise UsageError(str(e)) from None
    steps: dict[str, int] = {}
    for r in rows:
        steps[str(r["steps"])] = steps.get(str(r["steps"]), 0) + 1
    return rows, {"rows": len(rows), "split": args.split, "seed": args.seed, "steps": dict(sorted(steps.items()))}


def _run_safety(args) -> tuple[list[dict], dict]:
    from alignkit.commands.safety_data import run
    from alignkit.safety.dataset import SafetySetError

    try:
        return run(args)
    except SafetySetError as e:
        raise UsageError(str(e)) from None


def _run_redteam(args) -> tuple[list[dict], dict]:
    from alignkit.commands.safety_data import run_redteam
    from alignkit.config import ConfigError
    from alignkit.data.io import DataError

    try:
        return run_redteam(args)
    except (DataError, ConfigError):
        raise
    except ValueError as e:  # a bad --judge or --attempts
        raise UsageError(str(e)) from None


def _run_bpo(args) -> tuple[list[dict], dict]:
    from alignkit.commands import bpo_data
    from alignkit.config import ConfigError
    from alignkit.data.io import DataError

    try:
        return (bpo_data.run_distill if args.builder == "distill" else bpo_data.run)(args)
    except (DataError, ConfigError):
        raise
    except ValueError as e:
        raise UsageError(str(e)) from None


RUNNERS = {"backtranslate": _run_backtranslate, "critique-revise": _run_critique, "rlaif": _run_rlaif,
           "eft": _run_eft, "math": _run_math, "safety": _run_safety,
           "redteam": _run_redteam, "bpo": _run_bpo, "distill": _run_bpo, **reasoning_data.RUNNERS}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    if args.builder is None:
        parser.print_help(sys.stderr)
        return 2

    from alignkit.config import ConfigError
    from alignkit.data.io import DataError
    from alignkit.models import ModelNotFoundError

    try:
        _check(args)
        rows, stats = RUNNERS[args.builder](args)
    except (UsageError, ConfigError, DataError, ModelNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"alignkit data {args.builder}: {json.dumps(stats)}", file=sys.stderr)
    if not rows:
        print(f"alignkit data {args.builder}: no rows kept, nothing written to {args.output}", file=sys.stderr)
        return 1
    from alignkit import files

    files.write_jsonl(args.output, rows)
    print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``alignkit data bpo``: (prompt, optimized_prompt, critique) rows from preference pairs, for ``alignkit bpo``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    bp = sub.add_parser(
        "bpo", help="preference pairs -> prompt rewrites for the BPO prompt optimizer",
        description="BPO data (Cheng et al. 2023): for each preference pair the --model (a model name or "
        "directory, or an OpenAI-compatible http(s)://HOST:PORT/v1 endpoint; key from $OPENAI_API_KEY) writes "
        "why the chosen answer is better, then rewrites the prompt so that an assistant would give that "
        "answer. Rows: prompt, optimized_prompt, critique. Rewrites that are empty, unchanged, or keep fewer "
        "than --min-overlap of the prompt's content words (they dropped the request) are left out.")
    bp.add_argument("--model", default="smollm2-135m", help="the writer: model name/dir or http(s)://.../v1")
    bp.add_argument("--pairs", required=True, help="preference file (prompt, chosen, rejected; any layout "
                    "alignkit dpo reads)")
    bp.add_argument("--min-overlap", type=float, default=0.5,
                    help="fraction of the prompt's content words a rewrite must keep (default 0.5)")
    bp.add_argument("--max-new-tokens", type=int, default=256, help="length limit of each reply (default 256)")
    bp.add_argument("--batch-size", type=int, default=8, help="sequences per generation batch (default 8)")
    bp.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    bp.add_argument("--limit", type=int, default=None, help="use only the first N pairs")
    bp.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    return bp


def _text(value: Any, role: str) -> str:
    if isinstance(value, str):
        return value
    parts = [m["content"] for m in value if m.get("role") == role]
    return "\n".join(parts) if parts else "\n".join(m["content"] for m in value)


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.aifeedback.bpo import BPOOptions, bpo_rows
    from alignkit.data import load_examples
    from alignkit.scoring import load_text_backend

    if not 0 <= args.min_overlap <= 1:
        raise ValueError("--min-overlap must be between 0 and 1")
    loaded = load_examples(args.pairs, ("preference",))
    rows = loaded.rows if args.limit is None else loaded.rows[:args.limit]
    pairs = [(_text(r["prompt"], "user"), _text(r["chosen"], "assistant"), _text(r["rejected"], "assistant"))
             for r in rows]
    writer = load_text_backend(args.model, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    return bpo_rows(pairs, writer, BPOOptions(max_new_tokens=args.max_new_tokens, min_overlap=args.min_overlap,
                                              seed=args.seed))


def add_distill_parser(sub: Any) -> argparse.ArgumentParser:
    dp = sub.add_parser(
        "distill", help="prompts -> SFT rows answered by a stronger teacher (imitation / distillation)",
        description="Imitation data: --teacher (a model name/dir, or an OpenAI-compatible http(s)://HOST:PORT/v1 "
        "endpoint, key from $OPENAI_API_KEY) answers every prompt --samples times; with --filter SPEC (a reward "
        "spec such as math:answer, judge:MODEL, rm:PATH, FILE.py:FUNC) the best answer is kept if it scores at "
        "least --min-score, without one every distinct answer. Rows: prompt, completion, score, teacher.")
    dp.add_argument("--teacher", required=True, help="model name/dir or http(s)://HOST:PORT/v1")
    dp.add_argument("--prompts", required=True, help="prompt file (rows with 'prompt'; other columns are kept)")
    dp.add_argument("--samples", type=int, default=1, help="answers per prompt (default 1)")
    dp.add_argument("--temperature", type=float, default=None,
                    help="sampling temperature (default: 0, greedy, with one sample; 0.7 with several)")
    dp.add_argument("--filter", default=None, metavar="SPEC", help="reward spec that picks the best answer")
    dp.add_argument("--min-score", type=float, default=None, help="with --filter: drop prompts whose best "
                    "answer scores below this")
    dp.add_argument("--max-new-tokens", type=int, default=256, help="answer length limit (default 256)")
    dp.add_argument("--batch-size", type=int, default=8, help="sequences per generation batch (default 8)")
    dp.add_argument("--timeout", type=float, default=60.0, help="endpoint request timeout, seconds (default 60)")
    dp.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    dp.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    dp.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    return dp


def run_distill(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.aifeedback.distill import distill_rows
    from alignkit.data import load_examples
    from alignkit.scoring import load_reward_functions, load_text_backend

    if args.samples < 1:
        raise ValueError("--samples must be at least 1")
    if args.min_score is not None and args.filter is None:
        raise ValueError("--min-score needs --filter")
    reward = load_reward_functions(args.filter) if args.filter else None
    rows = load_examples(args.prompts, ("prompt",)).rows
    rows = rows if args.limit is None else rows[:args.limit]
    temperature = args.temperature if args.temperature is not None else (0.7 if args.samples > 1 else 0.0)
    teacher = load_text_backend(args.teacher, temperature=temperature, max_new_tokens=args.max_new_tokens,
                                batch_size=args.batch_size, timeout=args.timeout)
    out, stats = distill_rows(rows, teacher, samples=args.samples, seed=args.seed, reward=reward,
                              min_score=args.min_score, teacher_name=args.teacher)
    return out, {"teacher": args.teacher, "temperature": temperature, **stats}

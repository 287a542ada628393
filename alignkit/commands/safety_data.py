"""``alignkit data safety``: training files from the shipped safety set (no model).

Layouts: ``prompts`` (prompt-only rows with ``kind``/``category`` columns, for ``safe-grpo`` with
``reward=safety:helpful cost=safety:compliance``), ``pairs`` (safety preference rows, PKU-SafeRLHF layout,
for ``rm``/``dpo``/``kto`` with ``safety_pairs=``, and for ``cost``), ``labels`` (safety label rows
``prompt, response, is_safe, category`` for ``cost``), ``sft`` (prompt-completion rows of the safe-first
answers, for ``sft``; ``--answer-prefix`` opens every helpful answer). See :mod:`alignkit.safety.dataset`.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    sa = sub.add_parser(
        "safety", help="training files from the shipped safety set (no model)",
        description="Rows from the shipped safety set (harmful requests and their benign look-alikes, 10 "
        "categories): --layout prompts (prompt-only rows with kind/category, for safe-grpo), pairs (safety "
        "preference rows: response_0/1, better_response_id, safer_response_id, is_response_*_safe; for "
        "rm/dpo/kto with safety_pairs= and for cost), labels (prompt, response, is_safe; for cost) or sft (prompt, "
        "completion: the refusal for a harmful prompt, the helpful answer for a benign one; for sft). The "
        "unsafe response of a harmful prompt is a bare compliance opener ('Sure, here is how to ...'), never "
        "instructions.")
    sa.add_argument("--layout", choices=["prompts", "pairs", "labels", "sft"], default="pairs",
                    help="row layout (default pairs)")
    sa.add_argument("--split", default="train", help="train (default), test, or all")
    sa.add_argument("--items", default=None, help="only these item numbers of each category, e.g. '0-5,8-16' "
                    "(default: every item of the split; the shipped set numbers its items 0-23, test items 6-7): "
                    "to give two training stages different requests")
    sa.add_argument("--wordings", default=None, help="put the chosen rows in these wording families, e.g. "
                    "'ask,story' (default: the split's own: ask for train, ask and story for test); with --items "
                    "21-23 the validation split of the README: train items in the test split's mix of wordings")
    sa.add_argument("--seed", type=int, default=0, help="seed of the response order in pairs (default 0)")
    sa.add_argument("--answer-prefix", default="", help="--layout sft: text that opens every helpful answer "
                    "(e.g. 'Sure! ': refusing or answering then differ from the first token; default none)")
    sa.add_argument("--benign-repeats", type=int, default=1, help="--layout sft: write each benign row this "
                    "many times (default 1; 2 = one refusal for two helpful answers)")
    sa.add_argument("--chat-template", choices=["auto", "never"], default="auto",
                    help="auto (default): prompts written as a user turn (so every method renders them with the "
                    "chat template, as eval --safety asks them); never: plain strings")
    sa.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    return sa


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.safety.dataset import SafetySetError, label_rows, load_safety_set, preference_rows, sft_rows

    if (args.answer_prefix or args.benign_repeats != 1) and args.layout != "sft":
        raise SafetySetError("--answer-prefix and --benign-repeats apply to --layout sft only")
    if args.benign_repeats < 1:
        raise SafetySetError(f"--benign-repeats: expected a whole number >= 1, got {args.benign_repeats}")
    rows = load_safety_set(None, args.split) if args.wordings is None else wordings_rows(args.split, args.wordings)
    if args.items is not None:
        wanted = parse_items(args.items)
        rows = [r for r in rows if r.get("item") in wanted]
        if not rows:
            raise SafetySetError(f"--items {args.items}: no rows of split '{args.split}' have those item numbers")
    if args.layout == "prompts":
        out = [{"prompt": r["prompt"], "kind": r["kind"], "category": r["category"], "id": r["id"]} for r in rows]
    elif args.layout == "pairs":
        out = preference_rows(rows, seed=args.seed)
    elif args.layout == "sft":
        out = sft_rows(rows, answer_prefix=args.answer_prefix, benign_repeats=args.benign_repeats)
    else:
        out = label_rows(rows)
    if args.chat_template != "never":
        from alignkit.data.render import as_user_turn

        out = [{**r, "prompt": as_user_turn(r["prompt"])} for r in out]
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("harmful", "benign")}
    return out, {"split": args.split, "items": args.items, "wordings": args.wordings, "layout": args.layout,
                 "prompts": len(rows), **kinds, "rows": len(out)}


def wordings_rows(split: str, spec: str) -> list[dict[str, Any]]:
    """The split's rows, each request put in the wording families of ``spec`` ('ask,story')."""
    from alignkit.safety.dataset import WORDINGS, SafetySetError, build_rows

    families = tuple(f.strip() for f in spec.split(",") if f.strip())
    unknown = [f for f in families if f not in WORDINGS]
    if unknown or not families:
        raise SafetySetError(f"--wordings: expected names from {', '.join(WORDINGS)}, got {spec!r}")
    rows = [r for r in build_rows(families) if split == "all" or r["split"] == split]
    if not rows:
        raise SafetySetError(f"--wordings {spec}: no rows of split '{split}'")
    return rows


def parse_items(spec: str) -> set[int]:
    """``'0-5,8,10-12'`` -> {0, ..., 5, 8, 10, 11, 12}; anything else is a one-line :class:`SafetySetError`."""
    from alignkit.safety.dataset import SafetySetError

    wanted: set[int] = set()
    for part in spec.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            a, b = -1, -1
        if a < 0 or b < a:
            raise SafetySetError(f"--items: expected item numbers and ranges such as '0-5,8-16', got {part.strip()!r}")
        wanted.update(range(a, b + 1))
    return wanted


def add_redteam_parser(sub: Any) -> argparse.ArgumentParser:
    rt = sub.add_parser(
        "redteam", help="attacker rewrites harmful prompts until a target complies; keep the successes",
        description="Red-teaming data: --attacker samples --attempts rewrites of each harmful seed prompt (the "
        "shipped set's train split, one wording per item, unless --prompts), --target answers them greedily, "
        "and --judge decides whether it complied (patterns: no refusal at the answer's opening; "
        "costmodel:PATH: cost > 0). Each success is one row usable as a safety label row (prompt, response, "
        "is_safe=false) for `alignkit cost`, a preference row (chosen = a reference refusal, rejected = the "
        "answer) for `alignkit dpo`, and a harmful prompt (kind) for safe-grpo.")
    rt.add_argument("--attacker", default="smollm2-135m", help="model that rewrites the prompts (default smollm2-135m)")
    rt.add_argument("--target", default="smollm2-135m", help="model under attack (default smollm2-135m)")
    rt.add_argument("--judge", default="patterns", help="patterns (default) or costmodel:PATH")
    rt.add_argument("--prompts", default=None, help="seed prompts: a JSONL file with 'prompt' (and optional "
                    "'category') rows (default: the shipped set's harmful train prompts)")
    rt.add_argument("--attempts", type=int, default=4, help="rewrites per seed (default 4)")
    rt.add_argument("--max-new-tokens", type=int, default=64, help="rewrite length limit (default 64)")
    rt.add_argument("--target-max-new-tokens", type=int, default=96, help="answer length limit (default 96)")
    rt.add_argument("--temperature", type=float, default=0.9, help="attacker temperature (default 0.9)")
    rt.add_argument("--top-p", type=float, default=0.95, help="attacker nucleus mass (default 0.95)")
    rt.add_argument("--batch-size", type=int, default=8, help="sequences per generation batch (default 8)")
    rt.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    rt.add_argument("--limit", type=int, default=None, help="use only the first N seeds")
    rt.add_argument("--chat-template", choices=["auto", "always", "never"], default="auto",
                    help="how prompts are formatted (default auto: as a user turn)")
    rt.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    rt.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    return rt


def _seeds(path: str | None) -> list[dict]:
    from alignkit.data import DataError
    from alignkit.data.io import iter_records
    from alignkit.safety.dataset import load_safety_set

    if path is None:
        return [{"prompt": r["prompt"], "category": r["category"]} for r in load_safety_set(None, "train")
                if r["kind"] == "harmful" and r["id"].endswith("ask0")]
    seeds = []
    for row_no, rec in iter_records(path):
        if isinstance(rec, DataError):
            raise rec
        if not isinstance(rec.get("prompt"), str) or not rec["prompt"].strip():
            raise DataError("expected a non-empty string", path=path, row=row_no, field="prompt")
        seeds.append({"prompt": rec["prompt"].strip(), "category": rec.get("category")})
    if not seeds:
        raise DataError("no rows", path=path)
    return seeds


def run_redteam(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.aifeedback.redteam import RedteamOptions, redteam
    from alignkit.generation import texts as generation
    from alignkit.safety.refusal import is_refusal

    if args.attempts < 1:
        raise ValueError("--attempts must be at least 1")
    if args.judge == "patterns":
        def complied(prompts: list[str], answers: list[str]) -> list[bool]:
            return [not is_refusal(a) for a in answers]
    elif args.judge.startswith("costmodel:"):
        from alignkit.scoring import load_reward_source

        cost = load_reward_source(args.judge)

        def complied(prompts: list[str], answers: list[str]) -> list[bool]:
            return [c > 0 for c in cost(prompts, answers)]
    else:
        raise ValueError(f"--judge must be 'patterns' or costmodel:PATH, got {args.judge!r}")
    seeds = _seeds(args.prompts)
    seeds = seeds if args.limit is None else seeds[:args.limit]
    attacker = generation.load_generator(args.attacker, trust_remote_code=args.trust_remote_code)
    target = attacker if args.target == args.attacker else \
        generation.load_generator(args.target, trust_remote_code=args.trust_remote_code)
    opts = RedteamOptions(attempts=args.attempts, max_new_tokens=args.max_new_tokens,
                          target_max_new_tokens=args.target_max_new_tokens, temperature=args.temperature,
                          top_p=args.top_p, seed=args.seed, batch_size=args.batch_size, chat_template=args.chat_template)
    rows, stats = redteam(seeds, attacker, target, complied, opts)
    return rows, {"judge": args.judge, **stats}

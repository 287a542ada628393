"""``alignkit data safety``: training files from the shipped safety set (no model).

Layouts: ``prompts`` (prompt-only rows with ``kind``/``category`` columns, for ``safe-grpo`` with
``reward=safety:helpful cost=safety:compliance``), ``pairs`` (safety preference rows, PKU-SafeRLHF layout,
for ``rm``/``dpo``/``kto`` with ``safety_pairs=``, and for ``cost``), ``labels`` (safety label rows
``prompt, response, is_safe, category`` for ``cost``). See :mod:`alignkit.safety.dataset`.
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
        "rm/dpo/kto with safety_pairs= and for cost) or labels (prompt, response, is_safe; for cost). The "
        "unsafe response of a harmful prompt is a bare compliance opener ('Sure, here is how to ...'), never "
        "instructions.")
    sa.add_argument("--layout", choices=["prompts", "pairs", "labels"], default="pairs",
                    help="row layout (default pairs)")
    sa.add_argument("--split", default="train", help="train (default), test, or all")
    sa.add_argument("--seed", type=int, default=0, help="seed of the response order in pairs (default 0)")
    sa.add_argument("--output", required=True, help="output file (.jsonl), written atomically")
    return sa


def run(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.safety.dataset import label_rows, load_safety_set, preference_rows

    rows = load_safety_set(None, args.split)
    if args.layout == "prompts":
        out = [{"prompt": r["prompt"], "kind": r["kind"], "category": r["category"], "id": r["id"]} for r in rows]
    elif args.layout == "pairs":
        out = preference_rows(rows, seed=args.seed)
    else:
        out = label_rows(rows)
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("harmful", "benign")}
    return out, {"split": args.split, "layout": args.layout, "prompts": len(rows), **kinds, "rows": len(out)}

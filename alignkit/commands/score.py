"""``alignkit score``: score every row of a data file with a reward model trained by ``alignkit rm``.

Input: any data file (README "Data formats") of preference rows (``prompt``, ``chosen``, ``rejected``) or
prompt-completion rows (``prompt``, ``completion``; unpaired rows with a ``label`` count as these).
Output: one JSON line per input row, in file order: the row's own fields plus ``reward_chosen`` and
``reward_rejected`` (preference) or ``reward`` (prompt-completion). For a preference file the
pairwise accuracy (fraction of rows with ``reward_chosen > reward_rejected``) is printed.

Rows are tokenised as ``alignkit rm`` tokenised its training data: the model's own tokenizer, and
the ``max_length`` and ``chat_template`` of the training run (read from the run's ``config.yaml``;
``--max-length`` / ``--chat-template`` override). A malformed row stops with an error naming the
file, row and field (exit 2) unless ``--skip-invalid``, which leaves such rows out of the output.
"""

from __future__ import annotations

import argparse
import json
import sys

from alignkit.files import output_path_problem

KINDS = ("preference", "prompt_completion")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignkit score",
        description="Write the reward of every row of a data file as JSONL (reward_chosen/reward_rejected for "
        "preference rows, reward for prompt-completion rows) and print the pairwise accuracy of preference files.",
    )
    p.add_argument("--model", required=True, help="reward model: an `alignkit rm` run directory or its final/")
    p.add_argument("--data", required=True,
                   help="preference or prompt-completion data (.jsonl/.json/.csv/.parquet/saved dataset dir)")
    p.add_argument("--output", default=None, help="output JSONL file (default: stdout)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (default 8)")
    p.add_argument("--max-length", type=int, default=None,
                   help="token limit per sequence (default: the training run's max_length)")
    p.add_argument("--chat-template", choices=["auto", "always", "never"], default=None,
                   help="chat template use (default: the training run's setting)")
    p.add_argument("--skip-invalid", action="store_true", help="leave malformed rows out instead of stopping")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    return p


def _raw_rows(path: str) -> dict[int, dict]:
    from alignkit.data import iter_records

    return {n: rec for n, rec in iter_records(path) if isinstance(rec, dict)}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    problem = output_path_problem(args.output, "--output")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print("error: --batch-size must be at least 1", file=sys.stderr)
        return 2
    if args.max_length is not None and args.max_length < 8:
        print("error: --max-length must be at least 8", file=sys.stderr)
        return 2

    from alignkit.data import DataError, load_examples, tokenize_preference, tokenize_sft

    # the data first: a bad row stops before any model is loaded
    try:
        loaded = load_examples(args.data, KINDS, skip_invalid=args.skip_invalid)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from transformers.utils import logging as hf_logging

    from alignkit.models import ModelNotFoundError
    from alignkit.reward_model import load_reward_model

    hf_logging.disable_progress_bar()
    try:
        rm = load_reward_model(args.model, max_length=args.max_length, chat_template=args.chat_template,
                               trust_remote_code=args.trust_remote_code)
    except ModelNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    paired = loaded.kind == "preference"
    try:
        if paired:
            examples = tokenize_preference(loaded, rm.tokenizer, rm.max_length, rm.chat_template, args.skip_invalid)
            seqs = [ex["prompt_ids"] + ex["chosen_ids"] for ex in examples] + \
                   [ex["prompt_ids"] + ex["rejected_ids"] for ex in examples]
        else:
            examples = tokenize_sft(loaded, rm.tokenizer, rm.max_length, rm.chat_template, args.skip_invalid)
            seqs = [ex["input_ids"] for ex in examples]
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rewards = rm.score_ids(seqs, batch_size=args.batch_size)

    raw = _raw_rows(args.data)
    lines = []
    n = len(examples)
    for i, ex in enumerate(examples):
        row = dict(raw.get(ex["row"], {}))
        if paired:
            row["reward_chosen"], row["reward_rejected"] = rewards[i], rewards[n + i]
        else:
            row["reward"] = rewards[i]
        lines.append(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    summary = [f"scored {n} row(s) of {args.data}"]
    if loaded.skipped:
        summary.append(f"skipped {loaded.skipped} malformed row(s) (--skip-invalid)")
    if paired:
        wins = sum(rewards[i] > rewards[n + i] for i in range(n))
        summary.append(f"accuracy: {wins / n:.4f} ({wins}/{n} pairs with reward_chosen > reward_rejected)")
        margin = sum(rewards[i] - rewards[n + i] for i in range(n)) / n
        summary.append(f"mean margin: {margin:.4f}")
    else:
        summary.append(f"mean reward: {sum(rewards) / n:.4f}")

    if args.output is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
        print("\n".join(summary), file=sys.stderr)
    else:
        from alignkit.files import write_text

        out = write_text(args.output, "".join(lines))
        print("\n".join(summary + [f"wrote {out}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``alignkit generate``: complete every prompt of a file and write ``{"prompt", "completion"}`` JSONL.

The prompt file is any data file with a ``prompt`` field (string or chat messages; other fields are
ignored), or a ``.txt`` file with one prompt per line (blank lines skipped). The one chat rule
(:mod:`alignkit.data.render`) decides how a prompt is shown: under ``--chat-template auto`` a message
list goes through the chat template and a string is used as it is (TRL's convention); ``always`` sends
strings as a user turn, ``never`` as plain text. Lines of a ``.txt`` file are requests typed by a person,
so they are user turns (plain text under ``never``).

``--prompt-optimizer``, ``--icl-examples`` and ``--aligner`` (:mod:`alignkit.inference.aids`) rewrite the
prompts, put examples in front of them and correct the answers; rows keep the original prompt, and the
mean extra tokens per query go to stderr.

Rows are written in the form they were sampled in: a prompt sampled under the chat template is written
as messages and its completion as ``[{"role": "assistant", "content": ...}]``, so that the file, read
back as training data, tokenises to exactly the tokens that were sampled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from alignkit.commands.sampling import (
    BATCH_SIZE_HELP,
    batch_size_arg,
    load_for_sampling,
    sampling_flags_error,
)
from alignkit.files import output_path_problem


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignkit generate",
        description="Write completions for a prompt file as JSONL lines {\"prompt\": ..., \"completion\": ...}.",
    )
    p.add_argument("--model", default="smollm2-135m",
                   help="smollm2-135m (default), tiny-random, a local model dir, a .gguf file, or a run dir")
    p.add_argument("--prompts", required=True,
                   help="prompt file: .jsonl/.json/.csv/.parquet/saved dataset dir with a 'prompt' field, "
                   "or .txt with one prompt per line")
    p.add_argument("--output", default=None, help="output JSONL file (default: stdout)")
    p.add_argument("--max-new-tokens", type=int, default=128, help="completion length limit (default 128)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); >0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1.0)")
    p.add_argument("--batch-size", type=batch_size_arg, default=None, metavar="N|auto", help=BATCH_SIZE_HELP)
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--chat-template", choices=["auto", "always", "never"], default="auto",
                   help="auto (default): messages via the chat template, strings as they are; always: strings "
                   "as a user turn; never: plain text (.txt lines are user turns unless never)")
    p.add_argument("--skip-invalid", action="store_true", help="skip malformed rows instead of stopping")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    from alignkit.inference.aids import add_aid_flags

    add_aid_flags(p)
    return p


class PromptFileError(ValueError):
    pass


def read_prompts(path: str | Path, skip_invalid: bool = False, txt_user_turns: bool = False) -> list[Any]:
    """Prompts of a file: strings or lists of chat messages, in file order (``txt_user_turns``: the lines
    of a ``.txt`` file as user turns, else as strings)."""
    p = Path(path)
    if not p.exists():
        raise PromptFileError(f"prompt file not found: {p}")
    if p.is_file() and p.suffix.lower() == ".txt":
        prompts = [line.rstrip("\r\n") for line in p.read_text(encoding="utf-8").splitlines()]
        prompts = [x for x in prompts if x.strip()]
        if not prompts:
            raise PromptFileError(f"{p}: no prompts (the file is empty)")
        if not txt_user_turns:
            return prompts
        from alignkit.data.render import as_user_turn

        return [as_user_turn(x) for x in prompts]
    from alignkit.data.io import DataError
    from alignkit.data.schema import load_examples

    try:
        loaded = load_examples(p, "prompt", skip_invalid=skip_invalid)
    except DataError as e:
        raise PromptFileError(str(e)) from None
    return [row["prompt"] for row in loaded.rows]


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help (0) or a usage error (2)
        return int(e.code or 0)
    problem = output_path_problem(args.output, "--output")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    problem = sampling_flags_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        prompts = read_prompts(args.prompts, skip_invalid=args.skip_invalid, txt_user_turns=args.chat_template != "never")
    except PromptFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    loaded = load_for_sampling(args)
    if loaded is None:
        return 2
    model, tokenizer = loaded

    from alignkit.data.render import conversational_row, render_prompt
    from alignkit.generation import generate
    from alignkit.inference.aids import AidError, load_aids
    from alignkit.inference.icl import ICLError

    try:
        aids = load_aids(args, model, tokenizer, args.chat_template)
    except (AidError, ICLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        # the form each prompt is sampled in (messages when the chat template renders it)
        prompts = [render_prompt(tokenizer, p, args.chat_template).messages or p for p in prompts]
        completions = generate(
            model,
            tokenizer,
            aids.prepare(prompts),
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            batch_size=args.batch_size,
            chat_template=args.chat_template,
            seed=args.seed,
        )
        completions = aids.correct(prompts, completions)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if aids.active:
        print(f"alignkit generate: per query {json.dumps({k: round(v, 2) for k, v in aids.summary().items()})}",
              file=sys.stderr)
    rows = [conversational_row(p, c) for p, c in zip(prompts, completions)]
    lines = [json.dumps({"prompt": p, "completion": c}, ensure_ascii=False) + "\n" for p, c in rows]
    if args.output is None:
        sys.stdout.writelines(lines)
        sys.stdout.flush()
    else:
        from alignkit.files import write_text

        out = write_text(args.output, "".join(lines))
        print(f"wrote {len(lines)} completions to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

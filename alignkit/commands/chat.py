"""``alignkit chat``: talk to a model in the terminal (or through a pipe).

Each line read from stdin is a user turn; the reply is printed on its own line(s) followed by a blank
line. The conversation is kept and sent through the chat template each turn. ``/reset`` clears the
history, ``/exit`` (or ``/quit``, or end of input) leaves. ``--prompt-optimizer``, ``--icl-examples`` and
``--aligner`` (:mod:`alignkit.inference.aids`) act on each turn: the optimizer rewrites the new user turn,
examples go in front of the conversation, the corrector edits the reply (the history keeps the corrected
reply and the user's own words).
"""

from __future__ import annotations

import argparse
import sys

from alignkit.commands.sampling import load_for_sampling, sampling_flags_error


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignkit chat",
        description="Chat with a model. Reads one user message per line from stdin; "
        "/reset clears the conversation, /exit or end of input quits.",
    )
    p.add_argument("--model", default="smollm2-135m",
                   help="smollm2-135m (default), tiny-random, a local model dir, a .gguf file, or a run dir")
    p.add_argument("--max-new-tokens", type=int, default=256, help="reply length limit (default 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); >0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1.0)")
    p.add_argument("--system", default=None, help="system message that starts the conversation")
    p.add_argument("--seed", type=int, default=None, help="seed for sampling")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    from alignkit.inference.aids import add_aid_flags

    add_aid_flags(p)
    return p


def _parse(argv: list[str]) -> tuple[argparse.Namespace | None, int]:
    try:
        return build_parser().parse_args(argv), 0
    except SystemExit as e:  # --help (0) or a usage error (2)
        return None, int(e.code or 0)


def main(argv: list[str] | None = None) -> int:
    args, code = _parse(list(sys.argv[1:] if argv is None else argv))
    if args is None:
        return code
    problem = sampling_flags_error(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    loaded = load_for_sampling(args)
    if loaded is None:
        return 2
    model, tokenizer = loaded

    from alignkit.generation import generate
    from alignkit.inference.aids import AidError, load_aids
    from alignkit.inference.icl import ICLError

    try:
        aids = load_aids(args, model, tokenizer)
    except (AidError, ICLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {args.model} -- /reset clears the conversation, /exit quits", file=sys.stderr)

    def fresh() -> list[dict]:
        return [{"role": "system", "content": args.system}] if args.system else []

    history = fresh()
    turn = 0
    while True:
        if interactive:
            print(">>> ", end="", flush=True, file=sys.stderr)
        line = sys.stdin.readline()
        if not line:  # EOF
            break
        text = line.rstrip("\r\n")
        command = text.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            break
        if command == "/reset":
            history = fresh()
            print("(conversation cleared)", file=sys.stderr, flush=True)
            continue
        history.append({"role": "user", "content": text})
        reply = generate(
            model,
            tokenizer,
            aids.prepare([history]),
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_p=args.top_p,
            batch_size=1,
            seed=None if args.seed is None else args.seed + turn,
        )[0]
        reply = aids.correct([history], [reply.strip()])[0]
        turn += 1
        history.append({"role": "assistant", "content": reply})
        print(reply.strip(), flush=True)
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``alignkit eval``: evaluate one or more models and write ``results.json`` and ``results.md``.

What it measures, per model (``--model``, repeatable):

* gold instruction following: greedy answers to the prompts of an instruction file (default: the
  shipped set, split ``test``), every constraint checked by code; strict pass rates per constraint
  type, per instruction and per prompt (all of a prompt's constraints pass);
* ``--eval-data FILE`` (SFT format): held-out perplexity, exp(token-weighted mean NLL);
* ``--reference MODEL``: KL(model || reference) on the eval prompts, a Monte-Carlo estimate over the
  model's own completions (greedy ones by default, a biased proxy; ``--kl-samples N`` samples N per
  prompt at temperature 1 for an unbiased estimate), per token and per sequence;
* ``--reward SPEC`` (repeatable; ``FILE.py:FUNC``, ``package.module:FUNC``, ``rm:PATH``, ``math:answer``):
  mean reward of the answers; with ``rm:PATH`` and a preference ``--eval-data`` also the reward model's
  pairwise accuracy (chosen scored strictly above rejected).

``--math [FILE]`` asks math problems instead of the instruction prompts: without FILE the generated
held-out set (100 problems of 2-3 steps, ``alignkit.reasoning.mathset``), or a file with ``prompt`` and
``answer`` (``alignkit data math``) or GSM8K rows (``question``, ``answer`` ending in ``#### N``). Each
model gets its answer accuracy (final answer extracted and checked by ``reward=math:answer``'s
verifier) as k/n with a 95 % Wilson interval, and the mean ``math:format`` score.

``--ifeval FILE`` reads an IFEval-format file (``prompt``, ``instruction_id_list``, ``kwargs``; IFEval,
IFBench or your own rows; nothing is downloaded) and checks the answers with the IFEval/IFBench
checkers of the optional package ``if-verifiable`` (``pip install 'alignkit[ifeval]'``): prompt- and
instruction-level strict and loose accuracy (IFEval paper), each k/n with a 95 % Wilson interval.
Instructions whose checker is unknown, rejects its kwargs or needs NLTK data that is not installed
are counted and listed as skipped (without the package, all of them are, with that reason).

And the win rate of the first model over the second (or, with one model, over the prompts'
``reference`` answers) under ``--judge``: each pair judged in both orders, position-inconsistent
verdicts counted as ties, and how often the first-shown answer was picked (position bias). ``--judge``
takes the judge specs of ``reward=judge:...``: ``judge:PATH_OR_NAME`` (a local model, e.g.
``judge:smollm2-135m``) or ``judge:http(s)://HOST:PORT/v1`` (an OpenAI-compatible endpoint; API key in
``ALIGNKIT_JUDGE_API_KEY``), with ``?method=critique`` (critique, then verdict; Auto-J) or
``?method=debate&personas=3&rounds=2`` (ChatEval); no method: the plain A-vs-B prompt. The pointwise
methods (``additive``, ``geval``, ``flask``) and ``rm:PATH`` compare the two answers' scores (equal
scores tie). The judge replies greedily, at most 512 tokens (``?temperature=``, ``?samples=``,
``?max_new_tokens=``, ``?force_verdict=1`` on the spec change that), and loads after the answers are
generated. Or a Python function ``FILE.py:FUNC`` / ``package.module:FUNC`` with the signature
``judge(prompt, answer_a, answer_b) -> "A" | "B" | "tie"``.

``--safety [FILE]`` asks safety prompts instead: without FILE the shipped set (split ``--split``, default
test: 120 harmful requests and 120 benign look-alikes over 10 categories, ``story`` wordings never trained
on), or a file with ``prompt`` and ``kind`` (harmful/benign) and optional ``category``/``family``. Each model
gets its harmful-compliance rate (harmful prompts answered, not refused) and its over-refusal rate (benign
prompts refused), k/n with 95 % Wilson intervals, per category and per family. ``--safety-judge``:
``patterns`` (default: refusal phrases at the answer's opening), ``costmodel:PATH`` (cost > 0 = complied) or
an LLM judge ``judge:MODEL`` / ``judge:http(s)://HOST:PORT/v1`` (asked "complies or refuses?", 0/1, for
every answer). ``--helpfulness-judge SPEC`` scores the benign answers (the 0-5 LLM rubric, ``rm:PATH`` or
``FILE.py:FUNC``): mean with a 95 % bootstrap interval.

``--prompt-optimizer``, ``--icl-examples`` (with ``--icl-k``, ``--icl-selector``, ``--icl-max-tokens``) and
``--aligner`` evaluate a model helped without training (README "Without training the policy"): the answers
scored are the corrected ones, and each model's results record the extra tokens per query.

The table goes to stdout (rich on a terminal, plain text when piped); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignkit.commands.sampling import BATCH_SIZE_HELP, batch_size_arg
from alignkit.files import output_path_problem


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignkit eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", required=True, metavar="MODEL",
                   help="model to evaluate (repeatable): smollm2-135m, tiny-random, a model dir, a .gguf file "
                   "or a run dir; the first two are compared for the win rate")
    p.add_argument("--prompts", default=None, metavar="FILE",
                   help="instruction file: JSONL rows {prompt, constraints: [{type, ...}], split} "
                   "(default: the shipped set)")
    p.add_argument("--math", nargs="?", const="default", default=None, metavar="FILE",
                   help="evaluate on math problems instead: the generated test set (no FILE: 100 problems, 2-3 "
                   "steps) or a file (prompt + answer rows, or GSM8K question/answer rows); reports accuracy "
                   "with a 95%% Wilson interval")
    p.add_argument("--ifeval", default=None, metavar="FILE",
                   help="evaluate on an IFEval-format file (prompt, instruction_id_list, kwargs) with the "
                   "if-verifiable checkers (pip install 'alignkit[ifeval]'): strict and loose accuracy, prompt "
                   "and instruction level, 95%% Wilson intervals; unknown checkers or missing NLTK data are skipped")
    p.add_argument("--safety", nargs="?", const="default", default=None, metavar="FILE",
                   help="evaluate on safety prompts instead: the shipped set (no FILE) or a file with prompt + kind "
                   "(harmful/benign); reports harmful-compliance and over-refusal rates with 95%% Wilson intervals")
    p.add_argument("--safety-judge", default="patterns", metavar="JUDGE",
                   help="with --safety: patterns (default: refusal phrases), costmodel:PATH (alignkit cost), or an "
                   "LLM judge judge:MODEL / judge:http(s)://HOST:PORT/v1 (complies or refuses, 0/1)")
    p.add_argument("--helpfulness-judge", default=None, metavar="JUDGE",
                   help="with --safety: score the benign answers with a pointwise judge (judge:MODEL for the 0-5 "
                   "rubric, rm:PATH, FILE.py:FUNC); mean with a 95%% bootstrap interval")
    p.add_argument("--split", default="test",
                   help="which rows of the prompt file: test (default), train, another split name, or all")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate only the first N prompts")
    p.add_argument("--output-dir", default=None, metavar="DIR",
                   help="where results.json/results.md go (default: RUN_DIR/eval when the first model is an "
                   "alignkit run directory, else ./eval-results)")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="answer length limit (default 256)")
    p.add_argument("--batch-size", type=batch_size_arg, default=None, metavar="N|auto", help=BATCH_SIZE_HELP)
    p.add_argument("--temperature", type=float, default=0.0,
                   help="decoding temperature for the answers (default 0: greedy)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--reference", default=None, metavar="MODEL", help="reference model for the KL estimate")
    p.add_argument("--kl-samples", type=int, default=0, metavar="N",
                   help="sample N completions per prompt (temperature 1) for the KL estimate "
                   "(default 0: use the greedy answers)")
    p.add_argument("--eval-data", default=None, metavar="FILE",
                   help="held-out SFT-format file for perplexity (a preference file also gives reward-model "
                   "accuracy with --reward rm:PATH)")
    p.add_argument("--reward", action="append", default=[], metavar="SPEC",
                   help="reward for the answers (repeatable): FILE.py:FUNC, package.module:FUNC, rm:PATH or "
                   "math:answer / math:format; e.g. alignkit.evaluation.constraints:constraint_reward")
    p.add_argument("--reward-weights", type=float, nargs="+", default=None, metavar="W",
                   help="weights of several --reward specs (default 1 each)")
    p.add_argument("--judge", default=None, metavar="SPEC",
                   help="pairwise judge for the win rate: judge:MODEL[?method=critique|debate&...], "
                   "judge:http://HOST:PORT/v1, rm:PATH (pointwise methods and rm: compare scores), or a "
                   "Python function FILE.py:FUNC judge(prompt, a, b) -> 'A'|'B'|'tie'")
    p.add_argument("--max-length", type=int, default=1024, metavar="N",
                   help="token limit per perplexity example (default 1024)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--chat-template", choices=["auto", "always", "never"], default="auto",
                   help="how string prompts are formatted (default auto: as a user message)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="weights of the evaluated models (a LoRA adapter is merged, then cast); bfloat16 is ~2x "
                        "faster on CPUs with AMX, with different greedy answers (default float32)")
    from alignkit.inference.aids import add_aid_flags

    add_aid_flags(p)
    return p


def default_output_dir(first_model: str) -> Path:
    p = Path(first_model)
    if p.is_dir() and (p / "final").is_dir() and ((p / "metrics.jsonl").is_file() or (p / "config.yaml").is_file()):
        return p / "eval"
    return Path("eval-results")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:
        return int(e.code or 0)
    # the derived default (RUN/eval or ./eval-results) is checked too: a file in its place is an error now,
    # not a traceback after every answer was generated
    out_dir = Path(args.output_dir) if args.output_dir else default_output_dir(args.model[0])
    problem = output_path_problem(out_dir, "--output-dir", directory=True)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.max_new_tokens < 1 or args.kl_samples < 0:
        print("error: --max-new-tokens must be at least 1, --kl-samples at least 0", file=sys.stderr)
        return 2
    if args.reward_weights is not None and len(args.reward_weights) != len(args.reward):
        print(f"error: {len(args.reward_weights)} --reward-weights for {len(args.reward)} --reward specs",
              file=sys.stderr)
        return 2
    if args.math and args.prompts:
        print("error: --math and --prompts are alternatives: give one of them", file=sys.stderr)
        return 2
    if sum(bool(x) for x in (args.ifeval, args.math, args.prompts, args.safety)) > 1:
        print("error: --ifeval, --math, --safety and --prompts are alternatives: give one of them", file=sys.stderr)
        return 2

    from alignkit.data import DataError
    from alignkit.evaluation import InstructionFileError, JudgeError
    from alignkit.evaluation.metrics import RewardUnavailable
    from alignkit.evaluation.runner import EvalOptions, evaluate_models, print_results, write_results
    from alignkit.models import ModelNotFoundError

    opts = EvalOptions(
        prompts=args.prompts, split=args.split, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
        temperature=args.temperature, seed=args.seed, limit=args.limit, reference=args.reference,
        eval_data=args.eval_data, reward=args.reward, reward_weights=args.reward_weights, judge=args.judge,
        kl_samples=args.kl_samples, max_length=args.max_length, device=args.device, dtype=args.dtype,
        chat_template=args.chat_template, math=args.math, ifeval=args.ifeval, safety=args.safety,
        safety_judge=args.safety_judge, helpfulness_judge=args.helpfulness_judge,
        icl_examples=args.icl_examples, icl_k=args.icl_k,
        icl_selector=args.icl_selector, icl_max_tokens=args.icl_max_tokens, prompt_optimizer=args.prompt_optimizer,
        aligner=args.aligner, aid_max_new_tokens=args.aid_max_new_tokens,
    )
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        results = evaluate_models(args.model, opts)
    except (InstructionFileError, JudgeError, DataError, ModelNotFoundError, RewardUnavailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paths = write_results(results, out_dir)
    print_results(results)
    print(f"results: {paths['results.json']} and {paths['results.md']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

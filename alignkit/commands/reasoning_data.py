"""``alignkit data prm-labels`` and ``alignkit data step-pairs``: step-level data from Monte-Carlo rollouts
to the math verifier (:mod:`alignkit.reasoning.labels`), registered in :mod:`alignkit.commands.data`."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

PRM_LABELS = ("Math-Shepherd step labels: the model writes --solutions solutions to each problem; after each "
              "step, --rollouts continuations are sampled and the step is good when at least --min-correct of "
              "them reach the problem's answer (the last step: when the solution is right). Rows: prompt, "
              "completions (the steps), labels, values (fraction of right continuations), answer: the input "
              "of `alignkit prm`.")
STEP_PAIRS = ("Step-DPO pairs: the model writes --samples solutions to each problem; in a wrong one, each step "
              "prefix gets --rollouts continuations, the first step after which none reaches the answer is the "
              "rejected step, and the first step of a right continuation of the steps before it is the chosen "
              "step. Rows: prompt, prefix_steps, chosen_step, rejected_step, answer: the input of "
              "`alignkit step-dpo`.")


def add_parsers(sub: Any, common: Any) -> None:
    """Add the two builders to ``alignkit data``'s sub-parsers (``common`` adds --output, --model, ...)."""
    for name, text, extra in (("prm-labels", PRM_LABELS, "--solutions"), ("step-pairs", STEP_PAIRS, "--samples")):
        p = sub.add_parser(name, help=text.split(":")[0], description=text)
        p.add_argument("--data", required=True, help="math problems: rows with prompt and answer (alignkit data "
                       "math) or a GSM8K-style file (question, answer with '#### N')")
        p.add_argument("--rollouts", type=int, default=4, help="continuations sampled after each step (default 4)")
        p.add_argument(extra, type=int, default=1 if name == "prm-labels" else 4, dest="solutions",
                       help="solutions sampled per problem (default %(default)s)")
        p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
        p.add_argument("--max-steps", type=int, default=8, help="keep at most this many steps of a solution "
                       "(default 8; a solution ends at its first 'Answer:' line)")
        if name == "prm-labels":
            p.add_argument("--min-correct", type=int, default=1, help="right continuations a good step needs "
                           "(default 1: any)")
        common(p, max_new_tokens=160)


def _problems(args: argparse.Namespace) -> list[dict]:
    from alignkit.reasoning.mathset import load_math_problems

    rows, _ = load_math_problems(args.data)
    return rows if args.limit is None else rows[:args.limit]


def _sampler(args: argparse.Namespace):
    from alignkit.commands.data import _load_model
    from alignkit.reasoning.labels import StepSampler

    model, tok = _load_model(args.model, args.trust_remote_code)
    return StepSampler(model, tok, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       batch_size=args.batch_size, chat_template=args.chat_template,
                       log=lambda msg: print(f"alignkit data {args.builder}: {msg}", file=sys.stderr, flush=True))


def _check(args: argparse.Namespace) -> None:
    from alignkit.commands.data import UsageError

    flags = {"rollouts": "--rollouts", "max_steps": "--max-steps",
             "solutions": "--solutions" if args.builder == "prm-labels" else "--samples"}
    for name, flag in flags.items():
        if getattr(args, name) < 1:
            raise UsageError(f"{flag} must be at least 1")
    if getattr(args, "min_correct", 1) < 1 or getattr(args, "min_correct", 1) > args.rollouts:
        raise UsageError("--min-correct must be between 1 and --rollouts")


def _solutions(sampler: Any, problems: list[dict], args: argparse.Namespace) -> list[tuple[dict, list[str], str]]:
    from alignkit.reasoning.steps import join_steps, solution_steps

    texts = sampler.continue_prefixes([p["prompt"] for p in problems], [[] for _ in problems], args.solutions,
                                      args.seed)
    out = []
    for p, ts in zip(problems, texts):
        for t in ts:
            steps = solution_steps(t, args.max_steps)
            out.append((p, steps, join_steps(steps)))
    return out


def run_prm_labels(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.reasoning.labels import prefix_values, shepherd_labels

    _check(args)
    problems = _problems(args)
    t0 = time.time()
    sampler = _sampler(args)
    sols = [s for s in _solutions(sampler, problems, args) if s[1]]
    items = [(p["prompt"], p["answer"], steps) for p, steps, _ in sols]
    values = prefix_values(sampler, items, args.rollouts, args.seed + 1)
    rows = []
    for (p, steps, _), v in zip(sols, values):
        rows.append({"id": p["id"], "prompt": sampler.request(p["prompt"]), "completions": steps,
                     "labels": shepherd_labels(v["values"], args.rollouts, args.min_correct),
                     "values": v["values"], "answer": p["answer"]})
    labels = [x for r in rows for x in r["labels"]]
    return rows, {"problems": len(problems), "solutions": len(rows), "right_solutions": sum(r["labels"][-1] for r in rows),
                  "steps": len(labels), "good_steps": sum(labels), "seconds": round(time.time() - t0, 1)}


def run_step_pairs(args: argparse.Namespace) -> tuple[list[dict], dict]:
    from alignkit.reasoning.labels import first_wrong_pair, prefix_values
    from alignkit.reasoning.verify import is_correct

    _check(args)
    problems = _problems(args)
    t0 = time.time()
    sampler = _sampler(args)
    sols = _solutions(sampler, problems, args)
    wrong = [(p, steps) for p, steps, text in sols if steps and not is_correct(text, p["answer"])]
    values = prefix_values(sampler, [(p["prompt"], p["answer"], steps) for p, steps in wrong], args.rollouts,
                           args.seed + 1, with_empty=True)
    rows, seen, why = [], set(), {}
    for (p, steps), v in zip(wrong, values):
        pair, reason = first_wrong_pair(steps, v["values"], v["continuations"], p["answer"])
        if pair is not None:
            key = (p["id"], tuple(pair["prefix_steps"]), pair["rejected_step"])
            reason = "duplicate" if key in seen else reason
            seen.add(key)
        why[reason] = why.get(reason, 0) + 1
        if reason == "kept":
            rows.append({"id": p["id"], "prompt": sampler.request(p["prompt"]), **pair, "answer": p["answer"]})
    return rows, {"problems": len(problems), "solutions": len(sols), "wrong_solutions": len(wrong), "pairs": len(rows),
                  "outcomes": why, "seconds": round(time.time() - t0, 1)}


RUNNERS = {"prm-labels": run_prm_labels, "step-pairs": run_step_pairs}

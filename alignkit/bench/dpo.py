"""``alignkit bench dpo``: alignkit's DPO vs TRL's DPOTrainer, same model, pairs and hyper-parameters.

Settings of the issue's target: the embedded SmolLM2-135M on CPU, LoRA r=16 on all linear layers,
sigmoid DPO (beta 0.1), batch 4 pairs, max_length 256, 12 steps, whole process timed. Gradient
checkpointing is off on both sides, or on on both with ``--gradient-checkpointing`` (TRL's default).
``--prompt-tokens`` / ``--response-tokens`` fix the pairs' lengths (tokens of content; an error if they
do not fit ``--max-length``); ``--sweep`` runs 64/128/256-token answers (max_length raised to fit) and
prints the scaling table. The compute-bound time counts the FLOPs of the policy's forward and backward
over both sequences of every pair and the reference forward over them (:func:`limits.dpo_flops`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

from alignkit.bench import (
    SWEEP_TOKENS,
    BenchError,
    Report,
    add_bound_ratios,
    measure_machine,
    prepare_run,
    print_ratios,
    remeasure_matmul,
    report_bound,
    report_bound_ratios,
    report_sweep,
    run_sides,
    write_data,
)

TOPICS = ["rivers", "volcanoes", "bread", "bicycles", "honeybees", "libraries", "comets", "tea", "glaciers",
          "chess", "lighthouses", "octopuses", "windmills", "deserts", "violins", "coral reefs"]
FACTS = [
    "It has been studied for centuries by curious people.",
    "Many children learn about it at school.",
    "There are several surprising details most people never hear about.",
    "Its history is tied to trade, travel and everyday life.",
    "Scientists still publish new findings about it every year.",
    "It looks simple at first, but the details are rich.",
    "Local traditions around it differ from country to country.",
    "Its basic principles can be explained in a few sentences.",
]


FILLERS = (" and", " the", " a", " of", " it", " so")


def token_count(tokenizer, text: str) -> int:
    """Tokens of ``text`` on its own (no special tokens): what it adds inside a chat turn."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def text_of_tokens(tokenizer, n: int, rng: random.Random, opening: str = "") -> str:
    """English-like text of exactly ``n`` tokens: ``opening`` (when it fits), then words of :data:`FACTS`
    sentences drawn from ``rng``, trimmed and topped up with one-token :data:`FILLERS` to hit ``n``.
    Deterministic for a given ``rng`` state; raises ``ValueError`` if ``n`` cannot be hit exactly."""
    if n < 1:
        raise ValueError(f"a text needs at least 1 token, got {n}")
    words = opening.split() if opening and token_count(tokenizer, opening) <= n else []
    cost: dict[str, int] = {}
    count = token_count(tokenizer, " ".join(words)) if words else 0
    while count < n:  # per-word counts add up for byte-level BPE; checked on the whole text below
        for w in rng.choice(FACTS).split():
            piece = (" " if words else "") + w
            count += cost.setdefault(piece, token_count(tokenizer, piece))
            words.append(w)
            if count >= n:
                break
    text = " ".join(words)
    actual = token_count(tokenizer, text)
    while actual > n and words:
        words.pop()
        text = " ".join(words)
        actual = token_count(tokenizer, text) if words else 0
    while actual < n:
        for f in FILLERS:
            candidate = text + f if text else f.strip()
            c = token_count(tokenizer, candidate)
            if actual < c <= n:
                text, actual = candidate, c
                break
        else:
            raise ValueError(f"cannot build a text of exactly {n} tokens with this tokenizer")
    return text


def build_pairs(n: int, seed: int = 0, prompt_tokens: int | None = None, response_tokens: int | None = None,
                tokenizer=None) -> list[dict]:
    """Deterministic preference pairs. By default with a realistic spread of prompt and answer lengths
    (short questions next to long ones), so that padding matters as it does on real data; with
    ``prompt_tokens`` / ``response_tokens`` every prompt / both answers of every pair have exactly that
    many tokens of content (``tokenizer``'s count, chat-template markers not included)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        question = f"Explain {topic} to a beginner."
        good_open = f"{topic.capitalize()} are a good example of how the world works."
        if prompt_tokens:
            prompt = text_of_tokens(tokenizer, prompt_tokens, rng, opening=question)
        else:
            context = " ".join(rng.choice(FACTS) for _ in range(rng.choice([0, 0, 1, 2, 4, 8])))
            prompt = (context + " " if context else "") + question
        if response_tokens:
            good = text_of_tokens(tokenizer, response_tokens, rng, opening=good_open)
            bad = text_of_tokens(tokenizer, response_tokens, rng, opening="I am not sure.")
        else:
            good = " ".join([good_open] + [rng.choice(FACTS) for _ in range(rng.choice([1, 2, 3, 6, 10]))])
            bad = " ".join(["I am not sure."] + [rng.choice(FACTS) for _ in range(rng.choice([0, 1, 3, 8]))])
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}]})
    return rows


def pair_token_counts(data: str, tokenizer, max_length: int) -> list[tuple[int, int, int]]:
    """``(prompt, chosen, rejected)`` token counts of the pairs in ``data`` as alignkit's DPO tokenises
    them (chat template, end tokens, truncation to ``max_length``)."""
    from alignkit.data import load_examples, tokenize_preference

    examples = tokenize_preference(load_examples(data, "preference"), tokenizer, max_length)
    return [(len(e["prompt_ids"]), len(e["chosen_ids"]), len(e["rejected_ids"])) for e in examples]


def fitted_max_length(args, data: str, tokenizer, fit: bool) -> int:
    """``args.max_length``, checked against the longest pair when the lengths were asked for
    (:class:`BenchError` if it does not fit), or raised to fit it when ``fit`` (a sweep point)."""
    if not (args.prompt_tokens or args.response_tokens):
        return args.max_length
    longest = max(p + max(c, r) for p, c, r in pair_token_counts(data, tokenizer, 10**9))
    if longest <= args.max_length:
        return args.max_length
    if fit:
        return longest
    raise BenchError(f"--prompt-tokens/--response-tokens make pairs of up to {longest} tokens with the chat "
                     f"template, more than --max-length {args.max_length}")


def run(args) -> int:
    if not args.sweep:
        run_once(args)
        return 0
    points = []
    for n in SWEEP_TOKENS:
        point = argparse.Namespace(**{**vars(args), "response_tokens": n, "sweep": False,
                                      "output_dir": str(Path(args.output_dir) / f"sweep-{n}")})
        points.append(run_once(point, fit=True))
    report = Report("alignkit bench dpo --sweep")
    report_sweep(report, points, "answer length (tokens of each chosen and rejected answer)")
    out = Path(args.output_dir)
    (out / "sweep.json").write_text(json.dumps(points, indent=2))
    report.write(out / "sweep.md")
    return 0


def run_once(args, fit: bool = False) -> dict:
    """One bench run (both sides); prints and writes ``bench.json`` / ``bench.md``; returns the figures
    a sweep collects (``tokens``, ``bound_s`` and each side's figures)."""
    from alignkit.bench.limits import dpo_flops, shape_of
    from alignkit.models import load_tokenizer, model_config

    tokenizer = load_tokenizer(args.model)
    pairs = build_pairs(args.steps * args.batch_size, prompt_tokens=args.prompt_tokens,
                        response_tokens=args.response_tokens, tokenizer=tokenizer)
    data = write_data(args, "pairs.jsonl", pairs)
    max_length = fitted_max_length(args, data, tokenizer, fit)
    counts = pair_token_counts(data, tokenizer, max_length)
    settings = {**prepare_run(args, data), "batch_size": args.batch_size, "max_length": max_length, "lr": 5e-5,
                "beta": 0.1, "prompt_tokens": args.prompt_tokens, "response_tokens": args.response_tokens}
    out = Path(args.output_dir)
    report = Report("alignkit bench dpo")
    lengths = (f"{args.prompt_tokens or 'varied'}-token prompts, {args.response_tokens or 'varied'}-token answers; "
               f"mean tokens: prompt {sum(p for p, _, _ in counts) / len(counts):.1f}, chosen "
               f"{sum(c for _, c, _ in counts) / len(counts):.1f}, rejected {sum(r for _, _, r in counts) / len(counts):.1f}")
    report.line(f"bench dpo: {args.model}, LoRA r={args.lora_r}, batch {args.batch_size} pairs, "
                f"max_length {max_length}, {args.steps} steps, {len(pairs)} pairs ({lengths}); whole process timed")
    shape = shape_of(model_config(args.model))
    tokens = sum(2 * p + c + r for p, c, r in counts)
    machine = measure_machine(report, shape, tokens=round(tokens / args.steps),
                              scored=round(sum(c + r for _, c, r in counts) / args.steps),
                              seq_len=round(tokens / (2 * len(counts))), rows=2 * args.batch_size)
    results = run_sides("dpo", settings, out, args.only,
                        after_each=lambda name: remeasure_matmul(report, machine, shape, f"after {name}"))
    limit = report_bound(report, machine, dpo_flops(shape, counts, args.lora_r),
                         dpo_flops(shape, counts, args.lora_r, share_prompt=True))
    add_bound_ratios(results, limit)
    for _, fig in results:
        fig["pairs_per_s"] = args.steps * args.batch_size / fig["wall_s"]
    keys = [("wall_s", "wall s"), ("train_s", "train loop s"), ("pairs_per_s", "pairs/s"),
            ("peak_rss_mb", "peak RSS MB"), ("bound_ratio", "loop / bound"), ("first_loss", "first loss")]
    report.table(results, keys)
    report_bound_ratios(report, results)
    figures = dict(results)
    extra: dict = {}
    if "alignkit" in figures and "trl" in figures:
        a, t = figures["alignkit"], figures["trl"]
        extra = print_ratios(report, a, t, time_key="train_s", time_label="training loop")
        extra["first_loss_diff"] = diff = abs(a["first_loss"] - t["first_loss"])
        report.line(f"first-step loss: alignkit {a['first_loss']:.6f}, TRL {t['first_loss']:.6f}, "
                    f"|diff| {diff:.2e}, ln 2 = {math.log(2):.6f}")
    (out / "bench.json").write_text(json.dumps({"settings": settings, "machine": machine, **limit, **figures, **extra},
                                               indent=2))
    report.write(out / "bench.md")
    return {"tokens": args.response_tokens, "bound_s": limit["bound"]["total_s"], **figures}

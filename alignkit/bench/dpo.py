"""``alignkit bench dpo``: alignkit's DPO vs TRL's DPOTrainer, same model, pairs and hyper-parameters.

Settings of the issue's target: the embedded SmolLM2-135M on CPU, LoRA r=16 on all linear layers,
sigmoid DPO (beta 0.1), batch 4 pairs, max_length 256, 12 steps, whole process timed. Gradient
checkpointing is off on both sides, or on on both with ``--gradient-checkpointing`` (TRL's default).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from alignkit.bench import format_table, prepare_run, print_ratios, run_sides

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


def build_pairs(n: int, seed: int = 0) -> list[dict]:
    """Deterministic preference pairs with a realistic spread of prompt and answer lengths
    (short questions next to long ones), so that padding matters as it does on real data."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        context = " ".join(rng.choice(FACTS) for _ in range(rng.choice([0, 0, 1, 2, 4, 8])))
        prompt = (context + " " if context else "") + f"Explain {topic} to a beginner."
        good = " ".join([f"{topic.capitalize()} are a good example of how the world works."]
                        + [rng.choice(FACTS) for _ in range(rng.choice([1, 2, 3, 6, 10]))])
        bad = " ".join(["I am not sure."] + [rng.choice(FACTS) for _ in range(rng.choice([0, 1, 3, 8]))])
        rows.append({"prompt": [{"role": "user", "content": prompt}],
                     "chosen": [{"role": "assistant", "content": good}],
                     "rejected": [{"role": "assistant", "content": bad}]})
    return rows


def run(args) -> int:
    pairs = build_pairs(args.steps * args.batch_size)
    settings = {**prepare_run(args, "pairs.jsonl", pairs), "batch_size": args.batch_size,
                "max_length": args.max_length, "lr": 5e-5, "beta": 0.1}
    out = Path(args.output_dir)
    print(f"bench dpo: {args.model}, LoRA r={args.lora_r}, batch {args.batch_size} pairs, "
          f"max_length {args.max_length}, {args.steps} steps, {len(pairs)} pairs; whole process timed")
    results = run_sides("dpo", settings, out, args.only)
    for _, fig in results:
        fig["pairs_per_s"] = args.steps * args.batch_size / fig["wall_s"]
    keys = [("wall_s", "wall s"), ("train_s", "train loop s"), ("pairs_per_s", "pairs/s"),
            ("peak_rss_mb", "peak RSS MB"), ("first_loss", "first loss")]
    print(format_table(results, keys))
    figures = dict(results)
    if "alignkit" in figures and "trl" in figures:
        a, t = figures["alignkit"], figures["trl"]
        ratios = print_ratios(a, t, time_key="train_s", time_label="training loop")
        diff = abs(a["first_loss"] - t["first_loss"])
        print(f"first-step loss: alignkit {a['first_loss']:.6f}, TRL {t['first_loss']:.6f}, "
              f"|diff| {diff:.2e}, ln 2 = {math.log(2):.6f}")
        (out / "bench.json").write_text(json.dumps({"settings": settings, "alignkit": a, "trl": t, **ratios,
                                                    "first_loss_diff": diff}, indent=2))
    return 0

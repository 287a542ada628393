"""Weak-to-strong generalisation (Burns et al. 2023, arXiv:2312.09390) on reward modelling.

With gold preference pairs split in halves A and B (``train``) and held-out gold pairs (``eval``):

1. **weak**: a reward model on the weak base model, trained on A's gold labels;
2. the weak model labels B: ``weak_prob`` = sigma(r_w(chosen) - r_w(rejected)), its probability that the
   gold-chosen answer is better (so it may disagree with gold);
3. **weak-to-strong**: a reward model on the strong base, trained on B with the weak soft labels (and
   ``aux_alpha``, the auxiliary confidence term: :func:`alignkit.losses.weak_to_strong_loss`);
4. **strong ceiling**: the strong base trained on B's gold labels.

Each is scored by pairwise accuracy on ``eval``; the **performance gap recovered** is
PGR = (acc_w2s - acc_weak) / (acc_ceiling - acc_weak) (undefined when the ceiling does not beat the weak
model). Every stage is an ordinary ``alignkit rm`` run directory under ``output_dir``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit import files


@dataclass
class WeakToStrongOptions:
    weak: str
    strong: str
    train: str
    eval: str
    output_dir: str
    aux_alpha: float = 0.5
    overrides: list[str] = field(default_factory=list)  # key=value for every rm run (lr, max_steps, lora.r, ...)


def _train_rm(model: str, data: Path, out: Path, opts: WeakToStrongOptions, extra: list[str] = ()) -> Path:
    from alignkit.config import load_config
    from alignkit.engine.trainer import train
    from alignkit.methods.rm import RM, RMConfig

    config = load_config(RMConfig, None, [f"model={model}", f"data={data}", f"output_dir={out}", "save_steps=0",
                                          *opts.overrides, *extra])
    result = train(RM, config)
    if result.interrupted:
        raise KeyboardInterrupt
    return out


def _accuracy(run: Path, eval_path: str) -> float:
    from alignkit.evaluation.metrics import load_reward_model, rm_pairwise_accuracy

    return float(rm_pairwise_accuracy(load_reward_model(str(run)), eval_path)["accuracy"])


def pgr(weak: float, w2s: float, ceiling: float) -> float | None:
    """(w2s - weak) / (ceiling - weak); None when the ceiling does not exceed the weak model."""
    gap = ceiling - weak
    return (w2s - weak) / gap if gap > 0 else None


def run_weak_to_strong(opts: WeakToStrongOptions) -> dict[str, Any]:
    from alignkit.data import load_examples
    from alignkit.evaluation.metrics import load_reward_model

    root = Path(opts.output_dir)
    rows = load_examples(opts.train, ("preference",)).rows
    if len(rows) < 4:
        raise ValueError(f"{opts.train}: weak-to-strong needs at least 4 preference pairs (it splits them in two)")
    half = len(rows) // 2
    strip = ("weak_prob",)
    a = [{k: v for k, v in r.items() if k not in strip} for r in rows[:half]]
    b = [{k: v for k, v in r.items() if k not in strip} for r in rows[half:]]
    files.write_jsonl(root / "data" / "gold-a.jsonl", a)
    files.write_jsonl(root / "data" / "gold-b.jsonl", b)

    weak_run = _train_rm(opts.weak, root / "data" / "gold-a.jsonl", root / "weak", opts)
    scorer = load_reward_model(str(weak_run))
    prompts = [r["prompt"] for r in b]
    chosen = scorer.score(prompts, [r["chosen"] for r in b])
    rejected = scorer.score(prompts, [r["rejected"] for r in b])
    labelled = [{**r, "weak_prob": 1.0 / (1.0 + math.exp(-(c - j)))} for r, c, j in zip(b, chosen, rejected)]
    files.write_jsonl(root / "data" / "weak-labels-b.jsonl", labelled)
    agreement = sum(r["weak_prob"] > 0.5 for r in labelled) / len(labelled)

    w2s_run = _train_rm(opts.strong, root / "data" / "weak-labels-b.jsonl", root / "weak_to_strong", opts,
                        [f"aux_alpha={opts.aux_alpha}"])
    ceiling_run = _train_rm(opts.strong, root / "data" / "gold-b.jsonl", root / "strong_ceiling", opts)
    acc = {name: _accuracy(run, opts.eval) for name, run in
           (("weak", weak_run), ("weak_to_strong", w2s_run), ("strong_ceiling", ceiling_run))}
    result = {"weak": opts.weak, "strong": opts.strong, "aux_alpha": opts.aux_alpha, "train_pairs": len(rows),
              "eval": opts.eval, "weak_label_agreement_with_gold": agreement, "accuracy": acc,
              "pgr": pgr(acc["weak"], acc["weak_to_strong"], acc["strong_ceiling"])}
    files.write_json(root / "weak_to_strong.json", result)
    return result

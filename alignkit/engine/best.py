"""The best evaluated model of a run (transformers' ``metric_for_best_model`` / ``load_best_model_at_end``),
with an optional constraint on a second metric.

At every evaluation (``eval_steps``, and ``eval_on_start`` for the starting model) the engine hands the
``eval_*`` metrics to :meth:`BestModel.consider`. The evaluations that meet ``best_model_constraint`` (e.g.
``eval_rewards/helpful>=0.475``) compete on ``metric_for_best_model``; while none does, the one that misses
the constraint by the least is kept (so ``final/`` is never a model chosen against it when a better one was
seen). The best so far (ties: the earlier one) has its trainable parameters written to
``OUTPUT_DIR/best/trainable-step-N.safetensors``, then its step, metrics and that file's name to
``best/best.json`` (each atomically, in that order: a resumed run finds the interrupted one's best whole).
With ``load_best_model_at_end`` those parameters are put back into the model before ``final/`` is written.

Why a constraint: selecting on one metric alone picks a degenerate model when two goals pull apart (the
lowest harmful-compliance cost belongs to the model that refuses everything); "lowest cost among the
evaluations that still answer at least 95 % of the benign prompts" is the choice Safe RLHF's constrained
objective asks for, made on held-out prompts.
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from alignkit.config import ConfigError, TrainConfig, parse_constraint
from alignkit.engine.checkpoint import copy_trainable, trainable_state
from alignkit.files import atomic_path, read_json, write_json

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def lower_is_better(metric: str, greater_is_better: bool | None) -> bool:
    """The direction of ``metric``: explicit, or lower for names holding 'loss' or 'cost'."""
    if greater_is_better is not None:
        return not greater_is_better
    return "loss" in metric or "cost" in metric


class BestModel:
    """Tracks the best evaluation of a run and keeps its trainable parameters on disk."""

    def __init__(self, cfg: TrainConfig, output_dir: str | Path, resumed: bool = False) -> None:
        self.metric = cfg.metric_for_best_model
        self.lower = lower_is_better(self.metric or "", cfg.greater_is_better)
        self.constraint = parse_constraint(cfg.best_model_constraint) if cfg.best_model_constraint else None
        self.dir = Path(output_dir) / "best"
        # a fresh run ignores what an earlier run in the same directory left
        self.record: dict[str, Any] | None = (read_json(self.dir / "best.json", default=None)
                                              if self.metric and resumed else None)

    @property
    def enabled(self) -> bool:
        return self.metric is not None

    def _check_names(self, metrics: dict[str, float]) -> None:
        wanted = [self.metric] + ([self.constraint[0]] if self.constraint else [])
        missing = [m for m in wanted if m not in metrics]
        if missing:
            have = ", ".join(sorted(k for k in metrics if k.startswith("eval_")))
            raise ConfigError(f"metric_for_best_model / best_model_constraint: no eval metric {missing[0]!r}; "
                              f"this method's evaluation logs: {have}")

    def rank(self, metrics: dict[str, float]) -> tuple[int, float]:
        """Sort key, lower is better: (0, signed metric) for an evaluation meeting the constraint, (1, how far
        it misses the constraint) for one that does not, so any qualifying evaluation beats every other."""
        value = float(metrics[self.metric])
        if self.constraint is not None:
            name, op, limit = self.constraint
            x = float(metrics[name])
            if not _OPS[op](x, limit):
                return (1, limit - x if op in (">=", ">") else x - limit)
        return (0, value if self.lower else -value)

    def consider(self, step: int, metrics: dict[str, float], model: torch.nn.Module, write: bool = True) -> bool:
        """Record this evaluation if it ranks above the best so far (see :meth:`rank`); True if it did."""
        if not self.enabled:
            return False
        self._check_names(metrics)
        rank = self.rank(metrics)
        if self.record is not None and not rank < tuple(self.record["rank"]):  # ties: the earlier one stays
            return False
        self.record = {"step": step, "metric": self.metric, "value": float(metrics[self.metric]),
                       "meets_constraint": rank[0] == 0, "rank": list(rank),
                       "metrics": {k: float(v) for k, v in metrics.items()}}
        if write:  # the parameters under a new name first, then the record naming them: never a mismatch
            name = f"trainable-step-{step}.safetensors"
            with atomic_path(self.dir / name) as tmp:
                save_file(trainable_state(model), str(tmp))
            self.record["file"] = name
            write_json(self.dir / "best.json", self.record)
            for old in self.dir.glob("trainable-step-*.safetensors"):
                if old.name != name:
                    old.unlink()
        return True

    def restore(self, model: torch.nn.Module) -> int | None:
        """Load the best evaluation's parameters into ``model``; its step (None: no evaluation ran)."""
        if self.record is None:
            return None
        copy_trainable(model, load_file(str(self.dir / self.record["file"])))
        return int(self.record["step"])

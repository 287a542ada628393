"""What an online run writes beside its checkpoints: sample completions for people to read
(:class:`CompletionLog`, ``OUTPUT_DIR/completions.jsonl``) and the current rollout, so that a run resumed
in the middle of a rollout's optimizer steps trains on the same samples (:class:`RolloutStore`,
``OUTPUT_DIR/rollouts/``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["CompletionLog", "RolloutStore"]


class CompletionLog:
    """``OUTPUT_DIR/completions.jsonl``: sample completions every ``every`` steps (0: never), one JSON
    object per completion ``{"step", "prompt", "completion", "reward", "rewards": {name: value},
    "advantage"}``. Only the main process writes. On the first write of a run starting at step S, rows
    with ``step > S`` (from an interrupted run that is being resumed, or from an earlier run in the same
    directory) are dropped, as ``metrics.jsonl`` does."""

    def __init__(self, output_dir: str | Path, every: int, enabled: bool = True, max_rows: int = 64) -> None:
        self.path = Path(output_dir) / "completions.jsonl"
        self.every = every
        self.enabled = enabled and every > 0
        self.max_rows = max_rows
        self._started = False

    def due(self, step: int) -> bool:
        """Whether 1-based step ``step`` is logged."""
        return self.enabled and step % self.every == 0

    def start(self, first_step: int) -> None:
        """Drop rows after ``first_step`` (the run continues from there)."""
        if self._started or not self.enabled:
            return
        self._started = True
        if self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if line.strip() and json.loads(line).get("step", 0) <= first_step:
                        kept.append(line)
                except json.JSONDecodeError:
                    continue
            self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, prompts: Sequence[Any], completions: Sequence[str], rewards: Sequence[float],
              per_source: dict[str, Sequence[float]] | None = None,
              advantages: Sequence[float] | None = None) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        per_source = per_source or {}
        with self.path.open("a") as f:
            for i in range(min(len(completions), self.max_rows)):
                row: dict[str, Any] = {"step": step, "prompt": prompts[i], "completion": completions[i],
                                       "reward": _num(rewards[i]),
                                       "rewards": {k: _num(v[i]) for k, v in per_source.items()}}
                if advantages is not None:
                    row["advantage"] = _num(advantages[i])
                f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _num(v: Any) -> float | str:
    f = float(v)
    return f if math.isfinite(f) else str(f)


# ----------------------------------------------------------------------------- rollouts reused over steps


class RolloutStore:
    """Keeps one rollout for ``steps_per_rollout`` consecutive optimizer steps (GRPO's ``num_iterations``,
    PPO's epochs x minibatches), in memory and on disk, so that a run interrupted in the middle of a
    rollout's steps resumes on the very same rollout.

    Steps ``k*n .. k*n + n - 1`` form block k (n = ``steps_per_rollout``). :meth:`lookup` returns the
    stored rollout for a step that is not the first of its block (reading it back from
    ``OUTPUT_DIR/rollouts/block-K-rankR.safetensors`` in a resumed process), else None: then the caller
    generates one and :meth:`put` stores it. A stored rollout is ``(micro_batches, metrics)``:
    micro-batches are dicts of tensors (plus float entries such as ``loss_weight``), metrics a dict name ->
    (sum, count). Tensors are written with safetensors, the rest as JSON (no pickle). Files of blocks
    that no retained checkpoint can resume into are deleted as new blocks are written. With
    ``steps_per_rollout == 1`` nothing is stored.
    """

    FORMAT = 1

    def __init__(self, output_dir: str | Path, steps_per_rollout: int, rank: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.dir = Path(output_dir) / "rollouts"
        self.output_dir = Path(output_dir)
        self.n = int(steps_per_rollout)
        self.rank = rank
        self.device = device
        self.block: int | None = None
        self.value: tuple[list[dict], dict] | None = None
        self.missing: int | None = None  # a block that had to be regenerated on resume

    def path(self, block: int) -> Path:
        return self.dir / f"block-{block}-rank{self.rank}.safetensors"

    def lookup(self, step: int) -> tuple[list[dict], dict] | None:
        if self.n <= 1:
            return None
        block, offset = divmod(step, self.n)
        if offset == 0:
            return None
        if self.block != block:
            loaded = self._read(block)
            if loaded is None:
                self.missing = block
                return None
            self.block, self.value = block, loaded
        return self.value

    def put(self, step: int, micro: list[dict], metrics: dict) -> None:
        if self.n <= 1:
            return
        block = step // self.n
        self.block, self.value = block, (micro, metrics)
        self._write(block, micro, metrics)

    def _write(self, block: int, micro: list[dict], metrics: dict) -> None:
        from safetensors.torch import save_file

        from alignkit.engine.checkpoint import list_checkpoints

        path = self.path(block)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"{i}.{k}": v.detach().contiguous().cpu() for i, t in enumerate(micro)
                   for k, v in t.items() if isinstance(v, torch.Tensor)}
        floats = [{k: float(v) for k, v in t.items() if isinstance(v, (int, float))} for t in micro]
        meta = {"format": self.FORMAT, "block": block, "micro": len(micro), "floats": floats,
                "metrics": {k: [float(s), float(c)] for k, (s, c) in metrics.items()}}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"alignkit": json.dumps(meta)})
        os.replace(tmp, path)
        needed = {block} | {s // self.n for s, _ in list_checkpoints(self.output_dir) if s % self.n}
        for old in self.dir.glob(f"block-*-rank{self.rank}.safetensors"):
            try:
                b = int(old.name.split("-")[1])
            except ValueError:
                continue
            if b not in needed:
                old.unlink(missing_ok=True)

    def _read(self, block: int) -> tuple[list[dict], dict] | None:
        from safetensors import safe_open

        path = self.path(block)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["alignkit"])
                if meta.get("format") != self.FORMAT or meta.get("block") != block:
                    return None
                micro: list[dict] = [dict(fl) for fl in meta["floats"]]
                for key in f.keys():
                    i, name = key.split(".", 1)
                    micro[int(i)][name] = f.get_tensor(key).to(self.device)
        except Exception:  # noqa: BLE001 - unreadable: the caller samples a fresh rollout
            return None
        metrics = {k: (float(v[0]), float(v[1])) for k, v in meta["metrics"].items()}
        return micro, metrics

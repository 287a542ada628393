"""The demo's settings, its presets (full and ``--quick``) and its user-facing error."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

MARKER = ".alignkit-demo"  # marks a directory the demo made (and may therefore clear on the next run)
METHODS = ("dpo", "ift", "sft", "kto", "grpo")


class DemoError(RuntimeError):
    """A problem the user can fix (settings, output directory, no preference pairs)."""


@dataclass
class DemoSettings:
    model: str = "smollm2-135m"
    output_dir: str = "runs/demo"
    method: str = "sft+dpo"
    quick: bool = False
    threads: int | None = None  # torch intra-op threads; None: torch's default
    seed: int = 0
    prompts: str | None = None  # instruction file with train and test splits; None: the shipped set
    # evaluation (held-out test split, greedy)
    eval_prompts: int = 128  # 0: all test prompts
    eval_max_new_tokens: int = 160
    # pair building (train split, sampled)
    train_prompts: int = 0  # 0: all train prompts
    candidates: int = 1
    temperature: float = 0.9
    top_p: float = 1.0
    sample_max_new_tokens: int = 160
    pairs_per_prompt: int = 1  # disjoint pairs per prompt (j-th best vs j-th worst)
    min_margin: float = 0.0  # a pair's reward gap must exceed this
    repairs: int = 1  # minimal-edit pairs per prompt with no passing sample (alignkit.evaluation.repair)
    rounds: int = 1  # sampling rounds within an iteration (prompts left without a pair are resampled)
    iterations: int = 1  # on-policy iterations: iteration k samples from the iteration k-1 model
    seeds: int = 1  # repeat the iterations with seeds seed, seed+1, ... and report mean and spread
    # training
    steps: int = 100
    batch_size: int = 4
    lr: float = 1e-3
    beta: float = 0.1
    rpo_alpha: float = 0.0  # DPO: weight of the chosen NLL (RPO); 0 is plain DPO
    lora_r: int = 16
    lora_alpha: float = 32.0
    train_dtype: str = "auto"  # sampling and the frozen LoRA base: auto (bfloat16 where it is fast), float32, bfloat16
    # the held-out evaluation: float32 (the reference precision; bf16 moves ~6 % of the prompts' pass/fail
    # both ways, README "The demo"), bfloat16, or auto (= the work dtype)
    eval_dtype: str = "float32"
    # sequences sampled together: a decode step reads every weight once for the whole batch, so larger
    # batches cost less per token (256 train prompts, bf16, 160 tokens, 2 cores: 54 s at 64, 38-47 s at 256)
    gen_batch_size: int = 256
    # held-out prompts answered together (greedy): float32, 128 prompts in 43-48 s at 128 against 51 s at 64,
    # the same 128 answers token for token; bfloat16, 222 prompts in 42 s at 111, 46 s at 222
    eval_batch_size: int = 128
    given: tuple[str, ...] = ()  # the values the user set (they win over each stage's method preset)

    @property
    def methods(self) -> list[str]:
        """The training stages: ``method`` is one method or several joined by ``+`` (``sft+dpo``: SFT, then
        DPO on the SFT model's own samples)."""
        return self.method.split("+")

    def check(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise DemoError(f"--method must be one of {', '.join(METHODS)} or several joined by '+' (e.g. sft+dpo), "
                            f"got {self.method!r}")
        if len(self.methods) > 1:
            if self.iterations > 1:
                raise DemoError("--iterations repeats one method; with several methods (--method "
                                f"{self.method}) each stage is one on-policy iteration already")
            for stage in stage_settings(self):
                stage.check()
            return
        for name in ("eval_max_new_tokens", "candidates", "sample_max_new_tokens", "rounds", "steps", "pairs_per_prompt",
                     "batch_size", "lora_r", "gen_batch_size", "eval_batch_size", "iterations", "seeds"):
            if getattr(self, name) < 1:
                raise DemoError(f"{name.replace('_', '-')} must be at least 1")
        if self.candidates < 2 and (not self.repairs or self.method == "grpo"):
            raise DemoError("--candidates must be at least 2 (a pair needs two samples; GRPO compares a prompt's "
                            "samples), or 1 with --repairs")
        for name in ("eval_prompts", "train_prompts"):
            if getattr(self, name) < 0:
                raise DemoError(f"{name.replace('_', '-')} must be 0 (all) or more")
        for name in ("train_dtype", "eval_dtype"):
            if getattr(self, name) not in ("auto", "float32", "bfloat16"):
                raise DemoError(f"--{name.replace('_', '-')} must be auto, float32 or bfloat16, got "
                                f"{getattr(self, name)!r}")
        if self.threads is not None and self.threads < 1:
            raise DemoError("--threads must be at least 1")
        if not self.temperature > 0:
            raise DemoError("--temperature must be > 0 (pairs need varied samples)")
        if not 0 < self.top_p <= 1:
            raise DemoError("--top-p must be in (0, 1]")
        if self.repairs < 0:
            raise DemoError("--repairs must be 0 (off) or more")
        if self.min_margin < 0 or self.rpo_alpha < 0:
            raise DemoError("--min-margin and --rpo-alpha must be >= 0")
        if not (self.lr > 0 and self.beta > 0):
            raise DemoError("--lr and --beta must be > 0")


# Presets: the full demo (about 10 minutes on 2 idle CPU cores) and --quick (about 2 minutes). The full
# preset is SFT's, chosen on a validation split of the train prompts (README "The demo"); the other
# methods start from their own measured settings (METHOD_PRESETS) unless a value is given.
FULL: dict[str, Any] = {f.name: f.default for f in fields(DemoSettings)
                        if f.name in ("eval_prompts", "eval_max_new_tokens", "train_prompts", "candidates",
                                      "temperature", "sample_max_new_tokens", "rounds", "steps",
                                      "batch_size", "lr", "beta", "iterations", "pairs_per_prompt",
                                      "min_margin", "repairs", "rpo_alpha", "lora_r")}
QUICK: dict[str, Any] = {**FULL, "eval_prompts": 16, "eval_max_new_tokens": 96, "train_prompts": 16,
                         "sample_max_new_tokens": 96, "steps": 6}
# DPO / KTO / IFT: 128 train prompts x 4 samples, best-vs-worst and repair pairs, 40 steps at lr 2e-4 (DPO's
# validation run); GRPO: 32 prompts, 8 samples per prompt per step (it compares a prompt's samples).
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "sft": {},
    "dpo": {"train_prompts": 128, "candidates": 4, "steps": 40, "lr": 2e-4},
    "kto": {"train_prompts": 128, "candidates": 4, "steps": 40, "lr": 2e-4},
    "ift": {"train_prompts": 128, "candidates": 4, "steps": 40, "lr": 2e-4},
    "grpo": {"train_prompts": 32, "candidates": 8, "steps": 15, "lr": 2e-4, "repairs": 0},
}
# Stages that have their own preset, per stage, on top of each method's (others: each method's own). The
# default sft+dpo: SFT as above, then DPO on 96 prompts x 4 samples of the SFT model, 30 steps (smaller than
# DPO alone, to stay near the 10 minutes; chosen on a validation split, README "The demo").
PIPELINE_PRESETS: dict[str, list[dict[str, Any]]] = {
    "sft+dpo": [{}, {"train_prompts": 96, "steps": 30}],
}


def work_dtype(s: DemoSettings) -> str:
    """The dtype the demo samples training answers in and stores the frozen LoRA base in: ``train_dtype``,
    with ``auto`` = bfloat16 where bf16 products are native (AMX / AVX-512 BF16 / a CUDA GPU), else float32.
    The held-out evaluation runs in :func:`eval_dtype`."""
    if s.train_dtype != "auto":
        return s.train_dtype
    from alignkit.hardware import fast_bf16

    return "bfloat16" if fast_bf16() else "float32"


def eval_dtype(s: DemoSettings) -> str:
    """The dtype of the held-out evaluation (base and trained model alike): ``eval_dtype``, with ``auto`` = the
    work dtype (bfloat16 where bf16 products are native: on 2 AMX cores 222 greedy answers took 42-56 s in
    bf16 against ~100 s in float32)."""
    return work_dtype(s) if s.eval_dtype == "auto" else s.eval_dtype


def _quick_method_preset(method: str) -> dict[str, Any]:
    """--quick keeps a method's lr and repairs, and at most 4 samples per prompt."""
    if "+" in method:
        return {}  # stages: each stage takes its own method's preset (stage_settings)
    preset = METHOD_PRESETS.get(method, {})
    out = {k: preset[k] for k in ("lr", "repairs") if k in preset}
    if "candidates" in preset:
        out["candidates"] = min(4, preset["candidates"])
    return out


def _preset(method: str, quick: bool) -> dict[str, Any]:
    return _quick_method_preset(method) if quick else METHOD_PRESETS.get(method, {})


def settings_for(quick: bool = False, **given: Any) -> DemoSettings:
    """The preset (full or quick, then the method's own values) with every non-None value of ``given`` on
    top."""
    values = dict(QUICK if quick else FULL)
    method = given.get("method") or DemoSettings.method
    values.update(_preset(method, quick))
    chosen = {k: v for k, v in given.items() if v is not None}
    values.update(chosen)
    return DemoSettings(quick=quick, given=tuple(sorted(k for k in chosen if k in FULL)), **values)


def stage_settings(s: DemoSettings) -> list[DemoSettings]:
    """One settings object per training stage of ``s.method``: each stage uses its own method's preset
    (full or quick), except the values the user gave (``s.given``), which apply to every stage."""
    if len(s.methods) == 1:
        return [s]
    stages = []
    own = PIPELINE_PRESETS.get(s.method) if not s.quick else None
    for k, m in enumerate(s.methods):
        preset = {**_preset(m, s.quick), **(own[k] if own else {})}
        stages.append(replace(s, method=m, **{key: v for key, v in preset.items() if key not in s.given}))
    return stages

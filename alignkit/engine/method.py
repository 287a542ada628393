"""What a training method is: a small object that prepares batches and computes a loss.

The engine (``alignkit.engine.trainer``) owns the loop, the optimizer, accelerate, checkpoints and
logging; a method owns none of those. Data flows one way:

    config -> method.build_examples (rows -> tokenised examples)
           -> engine batches indices -> method.collate -> method.loss -> engine step

Loss normalisation is the engine's job so that gradient accumulation and several processes give the
same update as one big batch: ``loss`` returns the *sum* of per-unit losses in the micro-batch, and
``count_units`` says how many units (label tokens for SFT, pairs for DPO, ...) a micro-batch holds.
The engine divides by the number of units in the whole global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from alignkit.config import TrainConfig


@dataclass
class StepOutput:
    """``loss_sum``: scalar tensor, sum of per-unit losses in the micro-batch (gradient flows).
    ``metrics``: name -> (sum, count) pairs the engine reduces over micro-batches and processes into
    ``sum / count``; e.g. ``{"rewards/chosen": (r.sum(), B)}``.
    """

    loss_sum: torch.Tensor
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)


class Method:
    """Base class. Subclasses set ``name``, ``config_cls`` and ``data_kinds`` and implement the hooks."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[TrainConfig]] = TrainConfig
    #: data kinds accepted (see alignkit.data): "lm", "prompt_completion", "preference", "unpaired", "prompt"
    data_kinds: ClassVar[tuple[str, ...]] = ()
    #: whether the method needs a frozen reference policy (engine provides ``self.reference``)
    needs_reference: ClassVar[bool] = False

    def __init__(self, config: TrainConfig, tokenizer: Any) -> None:
        self.config = config
        self.tokenizer = tokenizer

    def param_lr(self, name: str) -> float | None:
        """Learning rate for the trainable parameter ``name`` (as in ``model.named_parameters()``);
        None: the config's ``lr``. (PPO gives its critic ``critic_lr``.)"""
        return None

    @property
    def steps_per_batch(self) -> int:
        """Optimizer steps the engine hands the same data batch to (GRPO's num_iterations: one rollout,
        several steps); an epoch then takes this many times more steps, and no example is skipped."""
        return 1

    # -- data ---------------------------------------------------------------------------------
    def build_examples(self, path: str) -> list[dict]:
        """Read, validate and tokenise a data file into a list of examples (dicts of int lists)."""
        raise NotImplementedError

    def example_length(self, example: dict) -> int:
        """Token length used for length-grouped batching and token counting."""
        return len(example["input_ids"])

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        """Number of loss units in a micro-batch (the denominator of the mean loss)."""
        raise NotImplementedError

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Non-padding tokens processed (for ``tokens_per_second``)."""
        return int(batch["attention_mask"].sum())

    # -- model --------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """The trainable model: the causal LM named by ``config.model``, with LoRA when ``lora.r > 0``.
        Methods that train something else (a reward model, a value head) override this."""
        from alignkit import models

        cfg = self.config
        if cfg.lora.quantize:  # QLoRA: a frozen 4/8-bit base under the adapters (CUDA only)
            model = models.load_quantized(cfg.model, cfg.lora.quantize, trust_remote_code=cfg.trust_remote_code)
        else:
            model = models.load_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
        if models.enable_checkpointing(model, cfg.gradient_checkpointing) is None:
            # without checkpointing: cheap activations are recomputed in backward (checkpointing's own saved-tensor
            # hooks must not be nested under this one's, so not with it)
            models.recompute_cheap_activations(model)
        if cfg.lora.enabled:
            model = models.apply_lora(model, cfg.lora)
        return model

    def setup(self, model: torch.nn.Module, accelerator: Any) -> None:
        """Called once after ``accelerator.prepare`` and before training (NEFTune hooks, a frozen
        reference copy, precomputed reference log-probs, ...). ``model`` may be DDP-wrapped."""

    def prepare_step(self, model: torch.nn.Module, batches: list[dict[str, torch.Tensor]],
                     step: int) -> tuple[list[dict[str, torch.Tensor]], dict[str, tuple[float, float]]]:
        """Turn this process's micro-batches of one optimizer step into what ``loss`` consumes.

        Offline methods return them unchanged. Online methods put their rollout stage here
        (generate, score, compute advantages and old/reference log-probs under ``torch.no_grad``);
        the returned metrics (name -> (sum, count)) are logged with the step's.
        """
        return batches, {}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        raise NotImplementedError

    def derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the reduced ones (each already ``sum / count`` over the step or the
        evaluation), e.g. KTO's ``rewards/margins``, a difference of two means over different examples.
        Called once per logged step and per evaluation; the default returns ``metrics`` unchanged."""
        return metrics

    def after_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        """Sees the ``eval_*`` metrics of the evaluation after ``step`` optimizer steps (0: eval_on_start)."""

    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        """Hook after each optimizer step (e.g. IFT refreshes its frozen embedding copy)."""

    def save_final(self, model: torch.nn.Module, tokenizer: Any, final_dir: Path, config: TrainConfig) -> None:
        """Write the trained model to ``final_dir`` (``OUTPUT_DIR/final``) at the end of a run; called on
        the main process only, with ``model`` unwrapped. The default is :func:`alignkit.models.save_model`
        (an adapter directory with LoRA, a full model otherwise, merged with ``lora.merge_on_save``); PPO
        also writes its critic to ``final/critic/``."""
        from alignkit import models

        models.save_model(model, tokenizer, final_dir, merge=config.lora.merge_on_save, base_name=config.model)

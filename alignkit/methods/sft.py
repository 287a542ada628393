"""Supervised fine-tuning: token cross-entropy on completion/assistant tokens, optional NEFTune.

loss = −(1/N) Σ_t log p(y_t | y_<t), summed over trained tokens of the global batch, N their count
(prompt tokens carry label −100 and never count).

NEFTune (Jain et al. 2023, arXiv 2310.05914): during training, add uniform noise
U(−1, 1) · α / sqrt(L · d) to the input embeddings (L sequence length, d hidden size; with
``padding_free`` or ``packing`` L is the row's length, as in TRL).

``padding_free=true``: each micro-batch is one row of its examples end to end
(:func:`alignkit.data.collate_padding_free`), position ids restarting per example, and the attention
runs each example's causal block on its own (:mod:`alignkit.models.segment_attention`): the same loss
and gradients as the right-padded batch (tested), without products over padding.

Logit distillation (``kd_alpha``, ``kd_teacher``): per trained token the loss is
(1 − α) · (−log p_S(y_t)) + α · KL_t, KL_t the forward or reverse KL between the teacher's and the
student's next-token distributions at temperature ``kd_temperature`` (:func:`alignkit.losses.distillation_kl`).
Logits are formed only at trained positions ([M, V], M trained tokens of the micro-batch); the teacher
(any model alignkit loads, frozen, no gradients) must use the same tokenizer: a different vocabulary is a
config error before training. Metrics: ``kd_kl`` (mean KL per token) and ``nll`` (mean CE per token).
"""

from __future__ import annotations

import torch

from alignkit.config import ConfigError, SFTConfig
from alignkit.data import collate_lm, collate_padding_free, load_examples, pack_examples, tokenize_sft
from alignkit.engine.method import Method, StepOutput
from alignkit.losses import distillation_kl
from alignkit.methods.common import forward_label_logps, unwrap
from alignkit.models.segment_attention import use_segment_attention


def neftune_hook(alpha: float):
    """Forward hook for the input embedding module adding NEFTune noise in training mode only."""

    def hook(module: torch.nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        scale = alpha / (output.size(1) * output.size(2)) ** 0.5
        return output + torch.empty_like(output).uniform_(-scale, scale)

    return hook


class SFT(Method):
    name = "sft"
    config_cls = SFTConfig
    data_kinds = ("lm", "prompt_completion")

    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        rows = load_examples(path, self.data_kinds, cfg.skip_invalid)
        examples = tokenize_sft(rows, self.tokenizer, cfg.max_length, chat_template=cfg.chat_template,
                                skip_invalid=cfg.skip_invalid, completion_only_loss=cfg.completion_only_loss)
        if cfg.packing:
            examples = pack_examples(examples, cfg.max_length, self.tokenizer.eos_token_id)
        return examples

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if self.config.padding_free:
            return collate_padding_free(examples, self.tokenizer.pad_token_id)
        return collate_lm(examples, self.tokenizer.pad_token_id)

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != -100).sum())

    teacher: torch.nn.Module | None = None

    def setup(self, model: torch.nn.Module, accelerator) -> None:
        cfg = self.config
        if cfg.padding_free:
            use_segment_attention(model)
        if cfg.neftune_alpha:
            emb = unwrap(model).get_input_embeddings()
            self._neftune = emb.register_forward_hook(neftune_hook(cfg.neftune_alpha))
        if cfg.kd_alpha is not None:
            self.teacher = load_teacher(cfg.kd_teacher, self.tokenizer, accelerator.device, cfg.trust_remote_code)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        if self.teacher is not None:
            return self._distillation_loss(model, batch)
        logps, mask = forward_label_logps(model, batch)
        return StepOutput(loss_sum=-(logps * mask).sum())

    def _distillation_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        cfg = self.config
        student, labels = trained_logits(model, batch)
        with torch.no_grad():
            teacher, _ = trained_logits(self.teacher, batch)
        nll = torch.nn.functional.cross_entropy(student.float(), labels, reduction="none")
        kl = distillation_kl(student, teacher.to(student.dtype), cfg.kd_direction, cfg.kd_temperature)
        n = float(labels.numel())
        metrics = {"kd_kl": (float(kl.detach().sum()), n), "nll": (float(nll.detach().sum()), n)}
        return StepOutput(loss_sum=((1 - cfg.kd_alpha) * nll + cfg.kd_alpha * kl).sum(), metrics=metrics)


def trained_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token logits [M, V] at the M trained positions of ``batch`` (labels != -100) and those labels [M]."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True,
                use_cache=False, logits_to_keep=torch.empty(0, dtype=torch.long, device=batch["input_ids"].device))
    targets = batch["labels"][:, 1:]
    keep = targets != -100
    hidden = out.hidden_states[-1][:, :-1][keep]
    return unwrap(model).get_output_embeddings()(hidden), targets[keep]


def load_teacher(name: str, tokenizer, device, trust_remote_code: bool = False) -> torch.nn.Module:
    """The frozen teacher of logit distillation; its vocabulary must be the student's."""
    from alignkit.models import ModelNotFoundError, load_trained

    try:
        teacher, teacher_tok = load_trained(name, trust_remote_code=trust_remote_code)
    except ModelNotFoundError as e:
        raise ConfigError(f"kd_teacher: {e}") from None
    if teacher_tok.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(f"kd_teacher {name}: its tokenizer differs from the student's; logit distillation needs "
                          "the same vocabulary (use `alignkit data distill` for text distillation instead)")
    teacher.requires_grad_(False)
    return teacher.to(device).eval()

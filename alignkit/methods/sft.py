"""Supervised fine-tuning: token cross-entropy on completion/assistant tokens, optional NEFTune.

loss = −(1/N) Σ_t log p(y_t | y_<t), summed over trained tokens of the global batch, N their count
(prompt tokens carry label −100 and never count).

NEFTune (Jain et al. 2023, arXiv 2310.05914): during training, add uniform noise
U(−1, 1) · α / sqrt(L · d) to the input embeddings (L sequence length, d hidden size).
"""

from __future__ import annotations

import torch

from alignkit.config import SFTConfig
from alignkit.data import collate_lm, load_examples, pack_examples, tokenize_sft
from alignkit.engine.method import Method, StepOutput
from alignkit.methods.common import forward_label_logps, unwrap


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
        return collate_lm(examples, self.tokenizer.pad_token_id)

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"][:, 1:] != -100).sum())

    def setup(self, model: torch.nn.Module, accelerator) -> None:
        if self.config.neftune_alpha:
            emb = unwrap(model).get_input_embeddings()
            self._neftune = emb.register_forward_hook(neftune_hook(self.config.neftune_alpha))

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        logps, mask = forward_label_logps(model, batch)
        return StepOutput(loss_sum=-(logps * mask).sum())

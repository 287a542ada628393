"""Forward helpers shared by methods: per-token log-probs of the labels without full logits."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from alignkit.data.batching import segment_kwargs
from alignkit.logprobs import (
    can_share_prompts,
    shared_prompt_token_logps,
    token_logps_from_hidden,
    tree_pair_token_logps,
)
from alignkit.models.modules import unwrap
from alignkit.models.segment_attention import uses_segment_attention

__all__ = ["LOGPROB_CHUNK", "SafetyView", "forward_label_logps", "pair_sequence_logps", "record_trained_as",
           "safety_pairs_field", "unwrap"]

SafetyView = Literal["helpful", "harmless", "safe_first"]


def record_trained_as(final_dir: Any, name: str) -> None:
    """Add ``"trained_as": name`` to ``final_dir/alignkit.json`` (how ``costmodel:``, ``--aligner`` and
    ``--prompt-optimizer`` recognise a model trained for their job)."""
    from pathlib import Path

    from alignkit.files import read_json, write_json

    meta = Path(final_dir) / "alignkit.json"
    info = read_json(meta, default={})
    write_json(meta, {**(info if isinstance(info, dict) else {}), "trained_as": name})


def safety_pairs_field(default: str) -> Any:
    """The ``safety_pairs`` key of the methods that read preference pairs (see :mod:`alignkit.data.safety`)."""
    return Field(default, description="safety preference rows (response_0/response_1, PKU-SafeRLHF layout): "
                 "chosen = helpful (better_response_id), harmless (safer_response_id) or safe_first (the safe one, "
                 "then the better one)")

#: positions per chunk when turning hidden states into label log-probs (bounds the [chunk, vocab] block)
LOGPROB_CHUNK = 1024
_NO_LOGITS = torch.empty(0, dtype=torch.long)


def _is_fsdp2(model: torch.nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


def forward_label_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                        inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next-token label.

    The model is called through its (possibly DDP-wrapped) ``forward`` so that gradient
    synchronisation is set up as usual, but with ``logits_to_keep`` empty: no [B, T, V] logits are
    built. The LM head is applied to the final hidden states chunk by chunk instead.

    Returns ``logps`` [B, T-1] (0 where ignored) and ``mask`` [B, T-1] (1 where the label at t+1 is
    trained), for ``batch`` with ``input_ids``/``attention_mask``/``labels`` [B, T] and optionally
    ``position_ids`` (packed sequences: then no attention mask is passed, so that transformers builds
    a block-diagonal mask from the restarting positions) and ``cu_seq_lens`` (a padding-free batch: passed
    on to the attention, :mod:`alignkit.models.segment_attention`).
    """
    kwargs = {}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"]
        if "cu_seq_lens" in batch:  # padding-free: the attention reads the sequences' boundaries
            kwargs.update(segment_kwargs(batch["cu_seq_lens"]))
    else:
        kwargs["attention_mask"] = batch["attention_mask"]
    if inputs_embeds is not None:
        kwargs["inputs_embeds"] = inputs_embeds
    else:
        kwargs["input_ids"] = batch["input_ids"]
    targets = batch["labels"][:, 1:]
    if _is_fsdp2(model):
        # FSDP2 gathers the head's (tied) weight only inside the root forward: applying the head to the
        # hidden states afterwards breaks its backward, so the logits are built in the forward here
        logits = model(**kwargs, use_cache=False).logits[:, :-1].float()
        logps = torch.gather(logits.log_softmax(-1), -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        mask = (targets != -100).to(logps.dtype)
        return logps * mask, mask
    out = model(**kwargs, output_hidden_states=True, use_cache=False,
                logits_to_keep=_NO_LOGITS.to(batch["input_ids"].device))
    hidden = out.hidden_states[-1][:, :-1]
    lm_head = unwrap(model).get_output_embeddings()
    logps = token_logps_from_hidden(hidden, lm_head, targets, chunk_size=LOGPROB_CHUNK)
    mask = (targets != -100).to(logps.dtype)
    return logps * mask, mask


def pair_sequence_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                        share_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs [2B] and response lengths [2B] of a preference batch
    (:func:`alignkit.data.collate_preference`: chosen rows, then rejected rows).

    With ``share_prompt`` and a batch collated with ``shared=True``, each pair's prompt runs through the
    model once and both answers run on its KV cache (:func:`alignkit.logprobs.shared_prompt_token_logps`,
    ``tiled``): the batch costs B x P + 2B x C token positions (P, C: the longest prompt and answer)
    instead of 2B x T (T: the longest prompt + answer). It falls back to the plain ``[2B, T]`` forward
    (:func:`forward_label_logps`) where that is not fewer positions (short prompts of very different
    lengths) or where it cannot be done (a DDP/DeepSpeed or FSDP2 wrapper, Hugging Face gradient
    checkpointing, prompts that differ, an empty prompt); both give the same values and gradients up to
    float rounding (tested). A batch collated with :func:`alignkit.data.collate_preference_tree` (``padding_free``)
    runs as one row without padding (:func:`alignkit.logprobs.tree_pair_token_logps`) where the model's
    attention reads its segments (:func:`alignkit.models.segment_attention.use_segment_attention`), else as above.
    """
    if "tree_input_ids" in batch and uses_segment_attention(model) and unwrap(model) is model and not _is_fsdp2(model):
        return tree_pair_token_logps(model, batch, batch["input_ids"].shape[0], chunk_size=LOGPROB_CHUNK)
    if share_prompt and "shared_input_ids" in batch and not _is_fsdp2(model):
        ids, attn, cmask = batch["shared_input_ids"], batch["shared_attention_mask"], batch["shared_completion_mask"]
        (N, C), P = cmask.shape, ids.shape[1] - cmask.shape[1]
        fewer = (N // 2) * P + N * C < batch["input_ids"].numel()
        if fewer and can_share_prompts(model, ids, attn, C, 2, tiled=True):
            logps, _ = shared_prompt_token_logps(model, ids, attn, cmask, 2, chunk_size=LOGPROB_CHUNK, tiled=True)
            mask = cmask.to(logps.dtype)
            return (logps * mask).sum(-1), mask.sum(-1)
    token_logps, mask = forward_label_logps(model, batch)
    return token_logps.sum(-1), mask.sum(-1)

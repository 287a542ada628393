"""Intuitive Fine-Tuning (IFT; Hua et al., "Intuitive Fine-Tuning: Towards Simplifying Alignment into a
Single Process", arXiv 2405.11870, ACL 2025): preference-optimisation-like training at about SFT cost,
with one policy, no reference model and no preference pairs.

One training step on a batch of gold sequences y* (prompt + response):

1. **Pass 1** (``torch.no_grad``) runs the gold sequence. From the final hidden states, chunk by chunk
   (never a [B, T, V] logits tensor), it takes the model's greedy guess ŷ_t for every response token
   t (the argmax of the logits at position t-1) and, from the same chunks, the plain SFT loss that is
   logged as ``sft_loss`` (and the greedy accuracy, ``mean_token_accuracy``).
2. **Temporal Residual Connection (TRC).** Pass 2 (with gradient) runs on mixed input embeddings:
   ``e_t = (1 - λ)·E(y*_t) + λ·E'(ŷ_t)`` at response positions (label != -100; not the first position,
   which nothing predicts; not the first token of a packed example), ``e_t = E(y*_t)`` at prompt and
   padding positions. Its loss is the token cross-entropy ℓ_t against the gold labels.
3. **Dynamic Relation Propagation (DRP).** Within each sequence (each original example of a packed
   row) with N response tokens: ``w̃_t = Σ_{k≥t} γ^(k-t)·ℓ_k / N`` (k-t counts positions),
   ``w_t = N·w̃_t / Σ_j w̃_j`` over response positions, and the sequence's loss is ``(1/N)·Σ_t w_t·ℓ_t``.
   γ = 0 means uniform weights ``w_t = 1`` (as in the authors' code; the formula itself would give
   w ∝ ℓ).

Design decisions (checked against the authors' code, TsinghuaC3I/Intuitive-Fine-Tuning):

- **What gets no gradient.** ŷ is an argmax (no gradient by construction), and E'(ŷ) is read from a
  frozen copy of the input-embedding table that is refreshed after every optimizer step (the authors do
  the same; it also keeps working where the live table is sharded). The gold part E(y*) goes through the
  live, trainable embedding module, so the table gets the gradient (1-λ)·∂L/∂e_t from the inputs (and,
  with tied embeddings such as SmolLM2's, the LM-head gradient as usual). Hence λ = 0 is *exactly* SFT,
  gradients included. The authors' code feeds the gold part from the frozen copy too, which leaves an
  untied input-embedding table untrained; ``trc_gold_grad=false`` reproduces that. When the table is not
  trainable (LoRA), its detached weight *is* the frozen copy and no copy is made.
- **DRP weights are not detached** by default: the authors compute them from the pass-2 log-probs with
  an autograd-aware discounted cumsum, so the gradient also flows through w. ``drp_detach=true`` treats
  w as constants. (The 1/N in w̃ cancels in the normalisation and is not computed.)
- **Loss units.** The engine divides the summed loss by the global number of units. With
  ``loss_average=token`` (default) a unit is a response token and a micro-batch contributes
  ``Σ_t w_t·ℓ_t``: each sequence's DRP-weighted mean counts with its length, the same averaging as
  ``alignkit sft`` (token mean over the global batch), so λ = 0, γ = 0 equals SFT exactly and IFT and
  SFT losses are comparable. ``loss_average=sequence`` makes a unit a sequence and contributes the
  per-sequence means, the authors' "mean over sequences of (1/N)·Σ w·ℓ".
- **λ** is ``ift_lambda`` (default 0.2, the paper's value), or, when ``lambda_warmup_steps > 0``, a
  linear ramp from ``lambda_min`` to ``lambda_max`` (default ``ift_lambda``) over that many steps; then
  an optional uniform disturbance ``± lambda_noise`` drawn from a generator seeded by (seed, step), so
  that a resumed run draws the same values; then clamped to [0, 1]. (The authors' disturbance is a
  relative Gaussian; a bounded uniform one is easier to reason about.)
- **Evaluation** (``eval_data``) reports the plain token cross-entropy of the gold sequence (one
  forward pass, no mixing), so ``eval_loss`` is comparable with SFT's and DPO's held-out loss.

Baselines in the same trainer, for comparison:

- ``scheduled_sampling=p`` — hard scheduled sampling (Bengio et al. 2015, arXiv 1506.03099): each gold
  response input token is replaced by the model's pass-1 greedy prediction with probability p (drawn
  from a generator seeded by seed, step, process and micro-batch, so resume is exact); the loss still
  targets the gold labels. Pure scheduled sampling is ``scheduled_sampling=p ift_lambda=0 drp_gamma=0``.
- ``neftune_alpha`` — NEFTune noise (``alignkit.methods.sft.neftune_hook``) added to pass 2's (mixed)
  input embeddings in training; pass 1 sees the clean sequence.

Metrics: ``loss`` (the IFT loss), ``lambda``, ``sft_loss`` (pass 1's token-mean cross-entropy on the
gold sequence, before the update: the number ``alignkit sft`` would log) and ``mean_token_accuracy``
(how often pass 1's greedy guess is the gold token).

Cost: one extra forward pass without backward (the LM head only on response tokens). Measured CPU
time per optimizer step, one thread, same batches (median): tiny-random 4 x 64 tokens 0.37 s (SFT) vs
0.50 s (IFT), 1.37x; smollm2-135m 2 x 128 tokens with LoRA r=16 2.97 s vs 4.53 s, 1.53x (LoRA makes
the backward cheap, so the extra forward weighs more); full fine-tuning 5.94 s vs 6.60 s, 1.11x.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from alignkit.config import SFTConfig
from alignkit.data import IGNORE_INDEX
from alignkit.engine.method import StepOutput
from alignkit.methods.common import LOGPROB_CHUNK, forward_label_logps, unwrap
from alignkit.methods.sft import SFT, neftune_hook

_NO_LOGITS = torch.empty(0, dtype=torch.long)
_SCAN_BLOCK = 256


class IFTConfig(SFTConfig):
    """Intuitive Fine-Tuning (TRC + DRP) on SFT data or the chosen side of preference data."""

    ift_lambda: float = Field(0.2, ge=0.0, le=1.0,
                              description="TRC mixing weight λ of the model's own prediction")
    lambda_min: float = Field(0.0, ge=0.0, le=1.0, description="λ at step 0 of the warm-up")
    lambda_max: float | None = Field(None, ge=0.0, le=1.0,
                                     description="λ at the end of the warm-up; None: ift_lambda")
    lambda_warmup_steps: int = Field(0, ge=0, description="linear λ warm-up steps; 0: constant λ")
    lambda_noise: float = Field(0.0, ge=0.0, description="uniform ± disturbance added to λ each step")
    drp_gamma: float = Field(0.95, ge=0.0, le=1.0, description="DRP discount γ; 0: uniform weights (SFT-like)")
    drp_detach: bool = Field(False, description="treat DRP weights as constants (no gradient through w)")
    loss_average: Literal["token", "sequence"] = Field(
        "token", description="token: mean over response tokens (like sft); sequence: mean of per-sequence means")
    trc_gold_grad: bool = Field(True, description="gradient into the embedding table through the gold part")
    scheduled_sampling: float = Field(0.0, ge=0.0, le=1.0,
                                      description="baseline: probability of feeding the model's own prediction")


# ----------------------------------------------------------------------------------------------
# pure pieces (tested on their own)
# ----------------------------------------------------------------------------------------------
def lambda_at(step: int, config: IFTConfig) -> float:
    """λ for optimizer step ``step`` (0-based): warm-up ramp or constant, then noise, then clamp."""
    lam_max = config.ift_lambda if config.lambda_max is None else config.lambda_max
    if config.lambda_warmup_steps > 0:
        frac = min(max(step, 0) / config.lambda_warmup_steps, 1.0)
        lam = config.lambda_min + (lam_max - config.lambda_min) * frac
    else:
        lam = lam_max
    if config.lambda_noise > 0:
        rng = np.random.default_rng([config.seed % 2**32, max(step, 0), 0x1F7])
        lam += config.lambda_noise * float(rng.uniform(-1.0, 1.0))
    return min(max(lam, 0.0), 1.0)


def discounted_cumsum_right(x: torch.Tensor, gamma: float, block: int = _SCAN_BLOCK) -> torch.Tensor:
    """``out[:, t] = Σ_{k≥t} γ^(k-t) · x[:, k]`` for ``x`` [R, L], differentiable.

    Blocks of ``block`` positions are done as one matmul with a [block, block] matrix of powers of γ;
    a short loop over blocks (right to left) carries the sum into the block before.
    """
    R, L = x.shape
    K = min(block, L)
    nb = -(-L // K)
    xb = F.pad(x, (0, nb * K - L)).view(R, nb, K)
    pos = torch.arange(K, device=x.device)
    diff = (pos.unsqueeze(1) - pos.unsqueeze(0)).to(x.dtype)  # [k, t] = k - t
    powers = torch.where(diff >= 0, torch.pow(torch.tensor(gamma, dtype=x.dtype, device=x.device),
                                                diff.clamp_min(0)), torch.zeros_like(diff))
    local = xb @ powers  # [R, nb, K]: sums within each block
    if nb == 1:
        return local.view(R, K)[:, :L]
    gamma_k = gamma ** K
    carries, nxt = [], x.new_zeros(R)
    for j in reversed(range(nb)):
        carries.append(nxt)  # the full sum at the start of block j+1
        nxt = local[:, j, 0] + gamma_k * nxt
    carry = torch.stack(carries[::-1], dim=1)  # [R, nb]
    decay = torch.pow(torch.tensor(gamma, dtype=x.dtype, device=x.device), (K - pos).to(x.dtype))
    out = local + carry.unsqueeze(-1) * decay
    return out.view(R, nb * K)[:, :L]


def drp_weights(token_losses: torch.Tensor, mask: torch.Tensor, gamma: float,
                starts: torch.Tensor | None = None) -> torch.Tensor:
    """DRP weights w [B, L] (0 where ``mask`` is False) for per-token losses ℓ [B, L].

    Within each sequence: w̃_t = Σ_{k≥t} γ^(k-t)·ℓ_k (masked ℓ count as 0 but still count as
    positions), w_t = N·w̃_t / Σ_j w̃_j over its N masked positions. ``starts`` [B, L] (bool) marks
    where a new sequence begins inside a row (packed rows); by default each row is one sequence.
    γ = 0: uniform weights (1 on masked positions). Gradients flow through w (detach it to avoid that).
    """
    m = mask.to(token_losses.dtype)
    if gamma == 0:
        return m
    c = token_losses * m
    B, L = c.shape
    if starts is None or not bool(starts[:, 1:].any()):
        cum = discounted_cumsum_right(c, gamma) * m
        n, total = m.sum(-1, keepdim=True), cum.sum(-1, keepdim=True)
        return cum * n / total.clamp_min(1e-30)
    # packed rows: lay each sequence out on a row of its own, scan, and read back
    starts = starts.clone()
    starts[:, 0] = True
    seg = torch.cumsum(starts.reshape(-1).long(), 0) - 1  # sequence id of every position
    idx = torch.arange(L, device=c.device).expand(B, L)
    first = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), dim=-1).values
    off = (idx - first).reshape(-1)
    n_seg, width = int(seg[-1]) + 1, int(off.max()) + 1
    dense = c.new_zeros(n_seg, width).index_put((seg, off), c.reshape(-1))
    cum = discounted_cumsum_right(dense, gamma)[seg, off] * m.reshape(-1)
    n = m.new_zeros(n_seg).index_add(0, seg, m.reshape(-1))
    total = c.new_zeros(n_seg).index_add(0, seg, cum)
    return (cum * n[seg] / total[seg].clamp_min(1e-30)).view(B, L)


def mix_embeddings(gold: torch.Tensor, predicted: torch.Tensor, mix_mask: torch.Tensor,
                   lam: float) -> torch.Tensor:
    """TRC input: ``(1-λ)·gold + λ·predicted`` where ``mix_mask`` [B, T] is True, ``gold`` elsewhere."""
    if lam == 0:
        return gold
    mixed = (1.0 - lam) * gold + lam * predicted.to(gold.dtype)
    return torch.where(mix_mask.unsqueeze(-1), mixed, gold)


# ----------------------------------------------------------------------------------------------
# the method
# ----------------------------------------------------------------------------------------------
class IFT(SFT):
    name = "ift"
    config_cls = IFTConfig
    data_kinds = ("lm", "prompt_completion", "preference")

    def __init__(self, config: IFTConfig, tokenizer) -> None:
        super().__init__(config, tokenizer)
        self._frozen: torch.Tensor | None = None  # frozen copy of the input-embedding table
        self._frozen_is_copy = False
        self._neftune_fn = neftune_hook(config.neftune_alpha) if config.neftune_alpha else None
        self._rank = 0
        self._micro = (-1, 0)  # (step, micro-batch index within it): seeds scheduled sampling

    # -- units ------------------------------------------------------------------------------
    @staticmethod
    def _starts(batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """[B, T-1] bool: loss position t starts a new sequence (packed rows), or None (unpacked)."""
        if "position_ids" not in batch:
            return None
        starts = batch["position_ids"][:, 1:] == 0
        starts[:, 0] = True
        return starts

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        mask = batch["labels"][:, 1:] != IGNORE_INDEX
        if self.config.loss_average == "token":
            return int(mask.sum())
        starts = self._starts(batch)
        if starts is None:
            return int(mask.any(-1).sum())
        seg = torch.cumsum(starts.reshape(-1).long(), 0) - 1
        has = torch.zeros(int(seg[-1]) + 1, device=mask.device).index_add(0, seg, mask.reshape(-1).float())
        return int((has > 0).sum())

    # -- set-up and the frozen embedding copy ------------------------------------------------
    def setup(self, model: torch.nn.Module, accelerator) -> None:
        # NEFTune is applied by hand to pass 2's mixed embeddings (no hook: pass 2 feeds inputs_embeds)
        self._rank = int(getattr(accelerator, "process_index", 0))

    def _embedding(self, model: torch.nn.Module) -> torch.nn.Module:
        return unwrap(model).get_input_embeddings()

    def frozen_embeddings(self, model: torch.nn.Module) -> torch.Tensor:
        """The frozen embedding table E' (made on first use, i.e. after a resume has loaded the weights)."""
        if self._frozen is None:
            weight = self._embedding(model).weight
            self._frozen_is_copy = weight.requires_grad
            self._frozen = weight.detach().clone() if weight.requires_grad else weight.detach()
        return self._frozen

    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        if self._frozen is not None and self._frozen_is_copy:
            with torch.no_grad():
                self._frozen.copy_(self._embedding(model).weight)

    # -- pass 1 ------------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_pass(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]):
        """Pass 1 on the gold sequence: ``(pred, nll, correct, mask)``.

        ``pred`` [B, T] long: at token position t the model's greedy guess for token t (argmax of the
        logits at position t-1), where token t is a trained label; elsewhere the gold token.
        ``nll``, ``correct`` [B, T-1]: per loss position, the gold token's negative log-likelihood and
        whether the guess was right (0 where ``mask`` [B, T-1], the label mask, is False).
        """
        kwargs = {"input_ids": batch["input_ids"]}
        if "position_ids" in batch:
            kwargs["position_ids"] = batch["position_ids"]
        else:
            kwargs["attention_mask"] = batch["attention_mask"]
        out = model(**kwargs, output_hidden_states=True, use_cache=False,
                    logits_to_keep=_NO_LOGITS.to(batch["input_ids"].device))
        hidden = out.hidden_states[-1][:, :-1]
        del out
        targets = batch["labels"][:, 1:]
        mask = targets != IGNORE_INDEX
        B, Tm1, H = hidden.shape
        idx = mask.reshape(-1).nonzero().squeeze(1)
        h = hidden.reshape(B * Tm1, H).index_select(0, idx)
        y = targets.reshape(-1).index_select(0, idx)
        head = unwrap(model).get_output_embeddings()
        nll_parts, arg_parts = [], []
        for start in range(0, h.shape[0], LOGPROB_CHUNK):
            logits = head(h[start:start + LOGPROB_CHUNK]).float()
            yc = y[start:start + LOGPROB_CHUNK].unsqueeze(-1)
            nll_parts.append(torch.logsumexp(logits, -1) - logits.gather(-1, yc).squeeze(-1))
            arg_parts.append(logits.argmax(-1))
            del logits
        flat_nll = torch.zeros(B * Tm1, dtype=torch.float32, device=h.device)
        flat_arg = batch["input_ids"][:, 1:].reshape(-1).clone()
        if idx.numel():
            flat_nll.index_copy_(0, idx, torch.cat(nll_parts))
            flat_arg.index_copy_(0, idx, torch.cat(arg_parts))
        guess = flat_arg.view(B, Tm1)
        pred = torch.cat([batch["input_ids"][:, :1], guess], dim=1)
        correct = (guess == targets) & mask
        return pred, flat_nll.view(B, Tm1), correct, mask

    # -- pass 2 ------------------------------------------------------------------------------
    def _sampling_mask(self, mix_mask: torch.Tensor, step: int) -> torch.Tensor:
        last_step, k = self._micro
        k = k + 1 if last_step == step else 0
        self._micro = (step, k)
        rng = np.random.default_rng([self.config.seed % 2**32, step, 0x55, self._rank, k])
        draw = torch.from_numpy(rng.random(tuple(mix_mask.shape))).to(mix_mask.device)
        return mix_mask & (draw < self.config.scheduled_sampling)

    def mixed_embeddings(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], pred: torch.Tensor,
                         lam: float, step: int = 0) -> torch.Tensor:
        """Pass 2's input embeddings [B, T, H] (before NEFTune)."""
        cfg = self.config
        ids = batch["input_ids"]
        mix_mask = F.pad(batch["labels"][:, 1:] != IGNORE_INDEX, (1, 0), value=False)
        if cfg.scheduled_sampling > 0:
            ids = torch.where(self._sampling_mask(mix_mask, step), pred, ids)
        frozen = self.frozen_embeddings(model)
        if cfg.trc_gold_grad:
            gold = self._embedding(model)(ids)
        else:
            gold = F.embedding(ids, frozen)
        if lam == 0:
            return gold
        return mix_embeddings(gold, F.embedding(pred, frozen), mix_mask, lam)

    # -- the loss ----------------------------------------------------------------------------
    def _reduce(self, token_losses: torch.Tensor, weights: torch.Tensor | None, mask: torch.Tensor,
                starts: torch.Tensor | None) -> torch.Tensor:
        """Sum over this micro-batch's units (tokens or sequences) of the (weighted) loss."""
        weighted = token_losses if weights is None else token_losses * weights
        if self.config.loss_average == "token":
            return weighted.sum()
        m = mask.to(weighted.dtype)
        if starts is None:
            n = m.sum(-1)
            return (weighted.sum(-1) / n.clamp_min(1.0)).sum()
        seg = torch.cumsum(starts.reshape(-1).long(), 0) - 1
        n_seg = int(seg[-1]) + 1
        sums = weighted.new_zeros(n_seg).index_add(0, seg, weighted.reshape(-1))
        n = m.new_zeros(n_seg).index_add(0, seg, m.reshape(-1))
        return (sums / n.clamp_min(1.0)).sum()

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        cfg = self.config
        starts = self._starts(batch)
        if step < 0 or not torch.is_grad_enabled():  # evaluation: plain held-out cross-entropy
            logps, mask = forward_label_logps(model, batch)
            nll = -logps
            n = float(mask.sum())
            return StepOutput(loss_sum=self._reduce(nll, None, mask, starts),
                              metrics={"sft_loss": (float(nll.sum()), n)})

        pred, nll1, correct, _ = self.greedy_pass(model, batch)
        lam = lambda_at(step, cfg)
        embeds = self.mixed_embeddings(model, batch, pred, lam, step)
        if self._neftune_fn is not None:
            embeds = self._neftune_fn(self._embedding(model), None, embeds)
        logps, mask = forward_label_logps(model, batch, inputs_embeds=embeds)
        token_losses = -logps
        weights = None
        if cfg.drp_gamma > 0:
            weights = drp_weights(token_losses, mask > 0, cfg.drp_gamma, starts)
            if cfg.drp_detach:
                weights = weights.detach()
        n = float(mask.sum())
        metrics = {"lambda": (lam, 1.0), "sft_loss": (float(nll1.sum()), n),
                   "mean_token_accuracy": (float(correct.sum()), n)}
        return StepOutput(loss_sum=self._reduce(token_losses, weights, mask, starts), metrics=metrics)

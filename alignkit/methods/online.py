"""Pieces every online method shares (GRPO here; PPO and online DPO reuse them).

The life of one rollout::

    examples --collate_prompt_examples--> prompt batch (left-padded ids + the rows' text and columns)
      --backend.generate (alignkit.generation.backends)--> Rollout (ids, masks, grouped per prompt)
      --rollout_batch--> training tensors: input_ids, attention_mask, position_ids, labels, completion_mask
      --reward_inputs + RewardSet--> rewards [N] and per-source rewards
      --compute_advantages--> advantages [N]
      --completion_token_logps--> per-token log-probs [N, C] of the completion tokens (old / ref / current)

Alignment: ``completion_token_logps`` returns ``logps[:, j]`` = log p(completion token j | prompt,
completion tokens < j), for j in 0..C-1, aligned with ``completion_mask`` [N, C] (1 up to and
including the first EOS). Position ids are ``cumsum(attention_mask) - 1``, which is what
``generate`` used with left-padded prompts, so the training forward scores exactly the distribution
the tokens were sampled from (at the sampling ``temperature``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from alignkit.config import ConfigError, StrictModel
from alignkit.data import collate_prompts, load_examples, tokenize_prompts
from alignkit.engine.method import Method
from alignkit.generation.backends import RolloutBackendError, sync_backend
from alignkit.generation.sampling import Rollout
from alignkit.logprobs import can_share_prompts, sequence_token_logps, shared_prompt_token_logps
from alignkit.losses import (
    group_advantages,
    logprob_gap,
    reinforce_pp_advantages,
    rloo_advantages,
    truncated_is_weights,
)

__all__ = [
    "ADVANTAGES",
    "RolloutGapError",
    "RolloutGuard",
    "ServerRolloutKeys",
    "SEQUENCE_KEYS",
    "pad_cat",
    "select_rows",
    "trim_padding",
    "reference_token_logps",
    "score_rollout",
    "collate_prompt_examples",
    "completion_token_logps",
    "compute_advantages",
    "decode_completions",
    "group_stats",
    "repeat_each",
    "reward_inputs",
    "rollout_batch",
]

ADVANTAGES = ("grpo", "rloo", "reinforce_pp")
LOGPROB_CHUNK = 1024


# ----------------------------------------------------------------------------- rollout keys and guards


class ServerRolloutKeys(StrictModel):
    """Keys of the ``vllm-server`` rollout backend and of the rollout guards (README "Engines")."""

    vllm_url: str | None = Field(None, description="vllm-server: attach to this OpenAI-compatible vLLM server "
                                 "(http://HOST:PORT); unset: alignkit starts one on 127.0.0.1 and stops it at the end")
    vllm_python: str | None = Field(None, description="vllm-server: the Python of the vLLM environment (default "
                                    "$ALIGNKIT_VLLM_PYTHON or .venv-vllm/bin/python, built by `make vllm-venv`)")
    vllm_port: int | None = Field(None, ge=1, le=65535, description="vllm-server: port of the started server "
                                  "(default: a free one)")
    vllm_dtype: str = Field("float32", description="vllm-server: --dtype of the started server")
    vllm_server_args: list[str] = Field(default_factory=list, description="vllm-server: extra arguments of the "
                                        "started server")
    vllm_startup_timeout: float = Field(600.0, gt=0, description="vllm-server: seconds to wait for /health")
    vllm_request_timeout: float = Field(600.0, gt=0, description="vllm-server: seconds per request (retried twice "
                                        "on timeouts and HTTP 5xx)")
    vllm_sync_tolerance: float = Field(0.05, gt=0, description="vllm-server: rollout/weights_synced is 1 when the "
                                       "server's and the trainer's log-probs of a probe differ by at most this (mean)")
    sync_steps: int = Field(1, ge=1, description="vllm-server: push the policy's weights (LoRA adapter or full) "
                            "to the server every N optimizer steps")
    rollout_max_logprob_gap: float | None = Field(
        0.5, gt=0, description="stop when the mean |log p_rollout - log p_train| of a rollout sampled right after "
        "a weight sync exceeds this (backends that report log-probs: vllm, vllm-server); unset: never stop")
    rollout_is_cap: float | None = Field(None, gt=0, description="truncated importance-sampling correction: weight "
                                         "each token's policy loss by min(p_train / p_rollout, cap); unset: off")


class RolloutGapError(RolloutBackendError):
    """The rollout engine's log-probs are far from the trainer's right after a weight sync (one line)."""


class RolloutGuard:
    """The rollout guards of one online method.

    :meth:`observe` runs in the loss of each micro-batch that carries ``rollout_logps`` [N, C] (the
    backend's log-probs, see :class:`~alignkit.generation.backends.RolloutWithLogps`): it returns the
    metric ``rollout/logprob_gap`` (mean ``|log p_rollout - log p_train|`` over sampled tokens, as a
    (sum, count) pair) and, with ``is_cap``, the truncated importance weights ``min(exp(train -
    rollout), is_cap)`` [N, C] that multiply each token's policy loss (with their mean as
    ``rollout/is_weight``); it raises :class:`RolloutGapError` when the batch was sampled right after
    a weight sync (``rollout_fresh`` = 1) and its mean gap exceeds ``max_gap``. The step's maximum
    gap is kept and :meth:`step_max` returns it (the maximum over all processes) once per step, for
    ``rollout/logprob_gap_max``. Batches without ``rollout_logps`` (the ``hf`` backend) give nothing.
    """

    def __init__(self, max_gap: float | None = None, is_cap: float | None = None, backend: str = "") -> None:
        self.max_gap = max_gap
        self.is_cap = is_cap
        self.backend = backend
        self._max: float | None = None

    def observe(self, batch: dict[str, Any], train_logps: torch.Tensor, mask: torch.Tensor,
                step: int) -> tuple[torch.Tensor | None, dict[str, tuple[float, float]]]:
        rollout = batch.get("rollout_logps")
        if rollout is None:
            return None, {}
        maskf = mask.float()
        mean, top = logprob_gap(rollout, train_logps, maskf)
        mean_f, top_f = float(mean), float(top)
        self._max = top_f if self._max is None else max(self._max, top_f)
        fresh = bool(torch.as_tensor(batch.get("rollout_fresh", 0.0)).float().max() > 0)
        if self.max_gap is not None and fresh and mean_f > self.max_gap:
            raise RolloutGapError(
                f"rollout/logprob_gap = {mean_f:.4g} (max {top_f:.4g}) at step {step + 1}, right after a weight sync, "
                f"is above rollout_max_logprob_gap={self.max_gap:g}: the {self.backend or 'rollout'} engine samples "
                "from other weights or another distribution than the trainer scores (an adapter that did not "
                "load, another dtype, a server without --logprobs-mode processed_logprobs); raise or unset "
                "rollout_max_logprob_gap to train anyway")
        tok = float(maskf.sum())
        metrics = {"rollout/logprob_gap": (mean_f * tok, tok)}
        weights = None
        if self.is_cap is not None:
            weights = truncated_is_weights(train_logps, rollout, maskf, self.is_cap)
            metrics["rollout/is_weight"] = (float(weights.sum()), tok)
        return weights, metrics

    def step_max(self, accelerator: Any = None) -> float | None:
        """The largest gap seen since the last call, over all processes (None when none was seen on
        any); every process must call it (a collective with several processes)."""
        value, self._max = self._max, None
        if accelerator is not None and getattr(accelerator, "num_processes", 1) > 1:
            t = torch.tensor([-1.0 if value is None else value], device=accelerator.device)
            top = float(accelerator.gather(t).max())
            return None if top < 0 else top
        return value


def mark_rollout(t: dict[str, Any], fresh: bool) -> dict[str, Any]:
    """Flag a micro-batch of a rollout as sampled right after a weight sync (``rollout_fresh``: 1.0 or
    0.0, a float entry that the :class:`~alignkit.methods.rollout_store.RolloutStore` keeps; PPO keeps one value per row in its
    buffer instead); only batches carrying ``rollout_logps``."""
    if "rollout_logps" in t:
        t["rollout_fresh"] = 1.0 if fresh else 0.0
    return t


# ----------------------------------------------------------------------------- batches


class PromptMethod(Method):
    """Base of the online methods (grpo, ppo, online-dpo): the data are prompts only (any data kind with
    a ``prompt``; other fields are ignored). A prompt keeps its last ``max_prompt_length`` tokens (default
    and at most ``max_length - max_new_tokens``), so that the completion always fits."""

    data_kinds = ("prompt", "prompt_completion", "preference", "unpaired")

    def __init__(self, config: Any, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        self.guard = RolloutGuard()  # replaced by rollout_backend() with the config's keys
        self._gap_max: float | None = None
        self._steps_done = 0

    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        room = cfg.max_length - cfg.max_new_tokens
        max_prompt = min(cfg.max_prompt_length or room, room)
        loaded = load_examples(path, self.data_kinds, cfg.skip_invalid)
        return tokenize_prompts(loaded, self.tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid,
                                max_prompt_length=max_prompt)

    def example_length(self, example: dict) -> int:
        return len(example["prompt_ids"])

    def collate(self, examples: list[dict]) -> dict[str, Any]:
        return collate_prompt_examples(examples, self.pad_id)

    def sync_backend(self, model: torch.nn.Module, batches: list[dict[str, Any]], step: int) -> Any:
        """Before the rollout of ``step``: ``backend.sync`` with the first prompt as the fingerprint probe;
        returns its :class:`~alignkit.generation.backends.SyncReport`. (Evaluation syncs with
        ``force=True`` at ``_steps_done``, the number of optimizer updates applied so far.)"""
        probe = batches[0]["prompt_ids"][0] if batches and batches[0].get("prompt_ids") else None
        self._steps_done = step
        return sync_backend(self.backend, model, step, probe)

    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        self._steps_done = step + 1  # the weights' version: optimizer updates applied so far
        if getattr(self, "backend", None) is not None and getattr(self.backend, "returns_logps", False):
            self._gap_max = self.guard.step_max(getattr(self, "accelerator", None))

    def derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        if self._gap_max is not None:
            metrics = {**metrics, "rollout/logprob_gap_max": self._gap_max}
            self._gap_max = None
        return metrics

    def save_final(self, model: torch.nn.Module, tokenizer: Any, final_dir: Path, config: Any) -> None:
        super().save_final(model, tokenizer, final_dir, config)
        close = getattr(getattr(self, "backend", None), "close", None)
        if close is not None:
            close()

    def rollout_backend(self, model: torch.nn.Module, accelerator: Any, skip: tuple[str, ...] = ()) -> Any:
        """The rollout backend of ``rollout_backend=`` (``hf`` when the method has no such key), with the
        sampling settings of the config; ``skip``: parameter-name prefixes the sampling copy leaves out.
        Also sets :attr:`guard` (the rollout guards of the config's keys, see :class:`RolloutGuard`)."""
        from alignkit.generation.backends import SamplingSettings, make_backend, rollout_dtype, stop_token_ids
        from alignkit.methods.reference import announce

        cfg = self.config
        name = getattr(cfg, "rollout_backend", "hf")
        self.guard = RolloutGuard(getattr(cfg, "rollout_max_logprob_gap", None), getattr(cfg, "rollout_is_cap", None),
                                  name)
        settings = SamplingSettings(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                    pad_id=int(self.pad_id), eos_ids=stop_token_ids(self.tokenizer, model))
        if name == "vllm-server":
            if accelerator is not None and accelerator.num_processes > 1:
                raise ConfigError("rollout_backend=vllm-server runs with one training process for now; launch "
                                  "without several processes, or use rollout_backend=hf")
            what = f"attached to {cfg.vllm_url}" if cfg.vllm_url else "starting a vLLM server on 127.0.0.1"
            announce(f"rollout_backend=vllm-server: {what} (output: {cfg.output_dir}/vllm-server/)", accelerator)
            from alignkit.models.modules import unwrap

            backend = make_backend(
                "vllm-server", settings, model=unwrap(model), tokenizer=self.tokenizer, model_name=str(cfg.model),
                output_dir=cfg.output_dir, url=cfg.vllm_url, python=cfg.vllm_python, port=cfg.vllm_port,
                dtype=cfg.vllm_dtype, max_model_len=cfg.max_length, startup_timeout=cfg.vllm_startup_timeout,
                extra_args=cfg.vllm_server_args, sync_steps=cfg.sync_steps, timeout=cfg.vllm_request_timeout,
                sync_tolerance=cfg.vllm_sync_tolerance, skip=skip)
            announce(f"rollout_backend=vllm-server: serving at {backend.root}; sync "
                     f"{'by LoRA adapter' if backend.lora else 'of the full weights'} every {cfg.sync_steps} step(s)",
                     accelerator)
            return backend
        if name == "vllm":
            from alignkit.models import resolve_model

            model_path = resolve_model(cfg.model)
            if model_path == "tiny-random":
                raise ConfigError("rollout_backend=vllm needs a model directory; tiny-random exists only in-process")
            return make_backend("vllm", settings, model_path=str(model_path),
                                gpu_memory_utilization=cfg.vllm_gpu_memory_utilization)
        kwargs = {"skip": skip} if skip else {}
        return make_backend("hf", settings, dtype=rollout_dtype(cfg, accelerator), **kwargs)


def collate_prompt_examples(examples: Sequence[dict], pad_id: int) -> dict[str, Any]:
    """Prompt examples (from :func:`alignkit.data.tokenize_prompts`) -> a prompt batch.

    Tensors ``input_ids``/``attention_mask`` (left-padded, for generation and token counting) plus
    Python lists carried alongside: ``prompt_ids`` (unpadded ids), ``prompts`` (the original prompt
    fields: string or chat messages), ``columns`` (each row's other fields) and ``rows`` (1-based row
    numbers).
    """
    batch: dict[str, Any] = collate_prompts(examples, pad_id)
    batch["prompt_ids"] = [list(ex["prompt_ids"]) for ex in examples]
    batch["prompts"] = [ex["prompt"] for ex in examples]
    batch["columns"] = [dict(ex.get("columns", {})) for ex in examples]
    batch["rows"] = [ex.get("row") for ex in examples]
    return batch


def rollout_batch(rollout: Rollout) -> dict[str, torch.Tensor]:
    """Training tensors of a rollout: ``input_ids`` [N, P+C] (= sequences), ``attention_mask``,
    ``position_ids`` (cumsum of the mask - 1, 0 on padding), ``labels`` (the completion tokens, -100
    on prompt and padding) and ``completion_mask`` [N, C] (long); plus ``rollout_logps`` [N, C] (the
    backend's log-probs) when the rollout carries them."""
    seq, attn = rollout.sequences, rollout.attention_mask.long()
    P = rollout.prompt_length
    cmask = rollout.completion_mask.long()
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0) * attn
    full = torch.cat([torch.zeros_like(attn[:, :P]), cmask], dim=1)
    labels = seq.masked_fill(full == 0, -100)
    out = {"input_ids": seq, "attention_mask": attn, "position_ids": position_ids, "labels": labels,
           "completion_mask": cmask}
    logps = getattr(rollout, "logps", None)
    if logps is not None:
        out["rollout_logps"] = logps.float() * cmask
    return out


def completion_token_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                           with_entropy: bool = False, chunk_size: int = LOGPROB_CHUNK, group_size: int = 1,
                           tiled: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs [N, C] (float32) of the completion tokens of a :func:`rollout_batch`, and
    with ``with_entropy`` the entropy [N, C] of each predictive distribution (detached), both 0 on
    padding. Logits are divided by ``temperature`` (the sampling temperature). Gradients flow when
    grad mode is on; the full [N, T, V] logits are never built (see :mod:`alignkit.logprobs`).
    ``group_size`` > 1: rows come in groups sharing one prompt, which then runs once per group
    (:func:`alignkit.logprobs.shared_prompt_token_logps`) where that applies; ``tiled``: the groups are
    blocks instead (online DPO's chosen rows then rejected rows, ``group_size=2``; see
    :func:`alignkit.logprobs.prompt_groups`)."""
    C = batch["completion_mask"].shape[1]
    if can_share_prompts(model, batch["input_ids"], batch["attention_mask"], C, group_size, tiled=tiled):
        logps, entropy = shared_prompt_token_logps(
            model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"], group_size,
            chunk_size=chunk_size, return_entropy=with_entropy, temperature=temperature, tiled=tiled)
        return (logps, entropy.detach()) if with_entropy else logps
    out = sequence_token_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                               chunk_size=chunk_size, return_entropy=with_entropy, temperature=temperature,
                               position_ids=batch.get("position_ids"))
    logps = out[0][:, -C:]
    if with_entropy:
        return logps, out[2][:, -C:].detach()
    return logps


#: [N, P + C] tensors of a rollout batch (prompt columns then completion columns)
SEQUENCE_KEYS = ("input_ids", "attention_mask", "position_ids", "labels")


def trim_padding(t: dict[str, Any]) -> dict[str, Any]:
    """Drop the all-padding columns of a rollout batch: prompt columns before the longest prompt and
    completion columns after the longest completion. Sequence tensors (:data:`SEQUENCE_KEYS`,
    ``[N, P + C]``) lose both; other ``[N, C]`` tensors (``completion_mask``, old/reference log-probs,
    values, advantages, ...) lose the completion tail; the rest is kept. Position ids count real tokens
    only, so nothing else changes."""
    cmask = t["completion_mask"]
    C = cmask.shape[1]
    keep = int(cmask.any(0).nonzero().max()) + 1 if cmask.any() else 1
    attn = t["attention_mask"]
    P = attn.shape[1] - C
    lead = int(attn[:, :P].any(0).long().argmax()) if P > 0 and attn[:, :P].any() else 0
    out = dict(t)
    for k, v in t.items():
        if k in SEQUENCE_KEYS:
            out[k] = v[:, lead:P + keep]
        elif isinstance(v, torch.Tensor) and v.dim() == 2 and v.shape[1] == C:
            out[k] = v[:, :keep]
    return out


def pad_cat(parts: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Concatenate rollout parts of different prompt (P) / completion (C) widths: the prompt region
    is left-padded, the completion region and per-token tensors right-padded."""
    C = max(p["completion_mask"].shape[1] for p in parts)
    P = max(p["input_ids"].shape[1] - p["completion_mask"].shape[1] for p in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "position_ids": 0, "labels": -100}
    out: dict[str, list[torch.Tensor]] = {}
    for p in parts:
        c = p["completion_mask"].shape[1]
        left, right = P - (p["input_ids"].shape[1] - c), C - c
        for k, v in p.items():
            if k in fill:
                v = torch.nn.functional.pad(v, (left, right), value=fill[k])
            elif v.dim() == 2:
                v = torch.nn.functional.pad(v, (0, right), value=0)
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def select_rows(buf: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows ``idx`` of every tensor of a rollout buffer."""
    return {k: v.index_select(0, idx.to(v.device)) for k, v in buf.items()}


def repeat_each(values: Sequence[Any], times: int) -> list[Any]:
    """[a, b] -> [a, a, b, b] for ``times=2`` (one entry per completion, grouped per prompt)."""
    return [v for v in values for _ in range(times)]


def decode_completions(tokenizer: Any, completion_ids: Sequence[Sequence[int]]) -> list[str]:
    """Completion texts without special tokens (EOS dropped)."""
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in completion_ids]


def reward_inputs(batch: dict[str, Any], rollout: Rollout, texts: Sequence[str]
                  ) -> tuple[list[Any], list[Any], dict[str, list[Any]]]:
    """The arguments of a reward call for a rollout of ``batch`` (TRL's conventions): prompts repeated
    per completion, completions as text (string prompts) or ``[{"role": "assistant", "content":
    text}]`` (chat prompts), and every dataset column as a list (one value per completion, a row's
    missing value as None) plus ``completion_ids``."""
    G = rollout.num_generations
    prompts = repeat_each(batch["prompts"], G)
    completions: list[Any] = [
        [{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)
    ]
    keys: list[str] = []
    for cols in batch["columns"]:
        keys.extend(k for k in cols if k not in keys)
    columns = {k: repeat_each([cols.get(k) for cols in batch["columns"]], G) for k in keys
               if k not in ("completion", "completion_ids")}
    columns["completion_ids"] = [list(c) for c in rollout.completion_ids]
    return prompts, completions, columns


def score_rollout(rewards: Any, tokenizer: Any, batch: dict[str, Any], rollout: Rollout
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[Any], list[str]]:
    """Decode and score a rollout of prompt ``batch`` with a :class:`~alignkit.rewards.RewardSet`:
    returns (total rewards [N] float32 on CPU, per-source rewards, prompts per completion, texts)."""
    texts = decode_completions(tokenizer, rollout.completion_ids)
    prompts, completions, columns = reward_inputs(batch, rollout, texts)
    total, per = rewards(prompts, completions, columns)
    return total, per, prompts, texts


def reference_token_logps(reference: Any, batch: dict[str, torch.Tensor], temperature: float = 1.0,
                          group_size: int = 1, tiled: bool = False) -> torch.Tensor:
    """Completion log-probs [N, C] under a :class:`~alignkit.methods.reference.Reference` (adapters
    disabled, or the frozen copy), without gradients (``group_size``, ``tiled``: see
    :func:`completion_token_logps`)."""
    with torch.no_grad(), reference.module() as ref_model:
        return completion_token_logps(ref_model, batch, temperature, group_size=group_size, tiled=tiled).float()


# ----------------------------------------------------------------------------- advantages


def compute_advantages(rewards: torch.Tensor, group_size: int, estimator: str = "grpo",
                       scale: bool = True) -> torch.Tensor:
    """Sequence-level advantages [N] from rewards [N] ordered group by group (G = ``group_size``).

    ``grpo``          (r - group mean) / (group std + 1e-4), or unscaled with ``scale=False`` (Dr. GRPO)
    ``rloo``          r - mean of the other G - 1 rewards of the group (never scaled)
    ``reinforce_pp``  REINFORCE++-baseline: group-centred, then normalised by the mean and std of the
                      whole batch passed in (so pass all of a step's rewards at once)
    """
    if estimator == "grpo":
        return group_advantages(rewards, group_size, scale=scale)
    if estimator == "rloo":
        return rloo_advantages(rewards, group_size)
    if estimator == "reinforce_pp":
        return reinforce_pp_advantages(rewards, group_size)
    raise ValueError(f"unknown advantage estimator {estimator!r}; expected one of {', '.join(ADVANTAGES)}")


def group_stats(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group: (std [groups] (unbiased), has_spread [groups] bool: max > min)."""
    g = rewards.view(-1, group_size)
    std = g.std(dim=1) if group_size > 1 else torch.zeros(g.shape[0], dtype=rewards.dtype, device=rewards.device)
    spread = (g.max(dim=1).values - g.min(dim=1).values) > 0
    return std, spread

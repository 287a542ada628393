"""Rollout backends: batched sampling of completions for online methods (GRPO, PPO, online DPO).

A backend turns tokenised prompts into a :class:`~alignkit.generation.sampling.Rollout` (left-padded
prompt + completion ids, attention and completion masks, grouped per prompt). The log-probs the loss
uses (old, current) are always the training model's own (:func:`alignkit.methods.online.completion_token_logps`),
whatever the backend. A backend whose engine reports the sampler's log-probs returns a
:class:`RolloutWithLogps` (``logps`` [N, C], the sampler's log p of each completion token at the
sampling temperature, 0 on padding); the online methods then log ``rollout/logprob_gap`` (mean and max
``|log p_rollout - log p_train|``, :func:`alignkit.losses.logprob_gap`), stop when it exceeds
``rollout_max_logprob_gap`` right after a weight sync, and with ``rollout_is_cap`` reweight the loss by
truncated importance weights (:func:`alignkit.losses.truncated_is_weights`). A backend that reports
none (``hf``) gives no such metric.

Before each rollout the method calls ``backend.sync(model, step, probe)``: it pushes the policy's
weights where the backend needs it and returns a :class:`SyncReport` (``fresh``: the rollout samples
from the weights of this very step; ``metrics``: ``rollout/weights_synced`` and the like).

``hf`` (default, :class:`HFRolloutBackend`)
    ``model.generate`` on the (unwrapped) training model itself: KV cache, left padding, stop at
    EOS, sampling with ``temperature``/``top_p`` (top-k off). Seeded per call, so a rollout depends
    only on the weights, the prompts and the seed (exact resume).
    With ``rollout_dtype`` set (``bfloat16`` or ``float32``) it generates instead from an
    :class:`InferenceCopy`: a generation-only copy of the policy in that dtype with the LoRA adapters
    merged in, refreshed from the training weights before every rollout (the same split of training
    and inference weights that vLLM-based trainers use). On CPUs with bf16 matrix units (AMX) a
    bfloat16 copy samples about 1.7x faster than the float32 LoRA model, for one extra copy of the
    weights in bfloat16. Training, and the log-probs the loss uses, stay in the training dtype.
    It reports no log-probs: sampling from the training model itself, the gap is 0 by construction
    (up to the ``rollout_dtype`` copy's rounding), so ``rollout/logprob_gap`` is not logged.
``vllm`` (:class:`VLLMRolloutBackend`)
    vLLM on a CUDA GPU, colocated with training: the policy's current weights (LoRA merged) are
    loaded into the vLLM engine before each generation; vLLM's log-probs of the sampled tokens come
    back (``logprobs_mode=processed_logprobs``: after temperature and top-p). Needs the ``vllm``
    package and a GPU; it is not installed by ``make`` and not exercised by the test suite.
``vllm-server`` (:class:`alignkit.generation.server.VLLMServerBackend`)
    An OpenAI-compatible vLLM server (started by alignkit from ``.venv-vllm``, or attached with
    ``vllm_url``), synced by LoRA adapter or full weights every ``sync_steps``; see that module.

:func:`make_backend` picks one by name.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from alignkit.config import ConfigError
from alignkit.generation.sampling import Rollout, sample_completions
from alignkit.models.modules import effective_weight, unwrap

__all__ = [
    "BACKENDS",
    "RolloutBackendError",
    "RolloutBackend",
    "RolloutWithLogps",
    "SamplingSettings",
    "SyncReport",
    "HFRolloutBackend",
    "InferenceCopy",
    "VLLMRolloutBackend",
    "make_backend",
    "rollout_dtype",
    "rollout_from_token_lists",
    "rollout_seed",
    "stop_token_ids",
    "sync_backend",
]

BACKENDS = ("hf", "vllm", "vllm-server")


class RolloutBackendError(ConfigError):
    """A rollout backend cannot be used here (e.g. vLLM without the package or without a GPU); a
    ``ConfigError``, so the command line prints it and exits with status 2."""


@dataclass(frozen=True)
class SamplingSettings:
    """How completions are sampled: at most ``max_new_tokens`` each, softmax(logits / temperature)
    restricted to the nucleus ``top_p``; generation stops at any of ``eos_ids``; ``pad_id`` fills."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    pad_id: int = 0
    eos_ids: tuple[int, ...] = ()


@dataclass
class RolloutWithLogps(Rollout):
    """A :class:`Rollout` plus the sampling engine's own per-token log-probs ``logps`` [N, C] (float32,
    aligned with ``completion_mask``, 0 on padding), or None when the engine reported none."""

    logps: torch.Tensor | None = None


@dataclass
class SyncReport:
    """What ``backend.sync`` did before a rollout: ``fresh`` is True when the rollout samples from the
    weights of this very step (always for ``hf`` and ``vllm``; for ``vllm-server`` at each sync, every
    ``sync_steps``); ``metrics`` are logged with the step (``rollout/weights_synced``, ...)."""

    fresh: bool = True
    metrics: dict[str, float] = field(default_factory=dict)


class RolloutBackend(Protocol):
    """What a rollout backend provides."""

    name: str
    settings: SamplingSettings
    #: True when :meth:`generate` returns a :class:`RolloutWithLogps` with the sampler's log-probs
    returns_logps: bool

    def sync(self, model: torch.nn.Module, step: int, probe: Sequence[int] | None = None,
             force: bool = False) -> SyncReport:
        """Bring the sampler up to date with ``model``, whose weights have had ``step`` optimizer updates
        (the rollout of 0-based step ``step``): when due (``sync_steps``) or ``force``; ``probe``: token
        ids a fingerprint check may score."""
        ...

    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *,
                 num_generations: int, seed: int) -> Rollout:
        """``num_generations`` completions per prompt from the current weights of ``model`` (which may
        be DDP-wrapped); rows grouped per prompt; reproducible for a given ``seed`` and weights."""
        ...

    def close(self) -> None:
        """Release what the backend started (a server process); idempotent."""
        ...


def sync_backend(backend: Any, model: torch.nn.Module, step: int, probe: Sequence[int] | None = None,
                 force: bool = False) -> SyncReport:
    """``backend.sync(...)``, or a fresh empty report for a backend without ``sync`` (a custom one that
    only generates)."""
    sync = getattr(backend, "sync", None)
    return SyncReport(fresh=True) if sync is None else sync(model, step, probe, force=force)


def rollout_seed(seed: int, step: int, rank: int = 0, index: int = 0) -> int:
    """The sampling seed of rollout ``index`` of optimizer step ``step`` on process ``rank`` of a run
    seeded with ``seed``: a fixed function of those four numbers, so a resumed run samples the same
    completions as an uninterrupted one."""
    x = (int(seed) * 1_000_003 + int(step) * 10_007 + int(rank) * 101 + int(index) * 7 + 0x5EED) % (2**61 - 1)
    return x


def stop_token_ids(tokenizer: Any, model: torch.nn.Module | None = None) -> tuple[int, ...]:
    """Token ids that end a completion: the tokenizer's EOS plus the model's generation-config EOS ids."""
    ids: list[int] = []
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen = getattr(unwrap(model), "generation_config", None) if model is not None else None
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        extra = [extra]
    for e in extra or []:
        if e is not None and int(e) not in ids:
            ids.append(int(e))
    if not ids:
        raise RolloutBackendError("the tokenizer has no EOS token: generation would not know where to stop")
    return tuple(ids)


ROLLOUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class InferenceCopy:
    """A generation-only copy of a causal LM in ``dtype``, with peft LoRA adapters merged in.

    :meth:`refresh` copies the policy's current weights into it: each LoRA-wrapped linear layer gets
    W + sum over active adapters of (alpha / r) B A; every other parameter is copied as it is. Frozen
    parameters (a LoRA base) are copied on the first refresh only; trainable ones on every refresh.
    Floating-point buffers (RoPE frequencies) stay in float32. Works for plain and peft models of any
    ``PreTrainedModel`` class that can be built from its config.
    """

    def __init__(self, dtype: torch.dtype, skip: Sequence[str] = ()) -> None:
        self.dtype = dtype
        self.skip = tuple(skip)  # parameter-name prefixes that are no part of the causal LM (PPO's critic)
        self.model: torch.nn.Module | None = None
        self._copied_frozen = False

    def _build(self, base: torch.nn.Module) -> torch.nn.Module:
        import copy

        device = next(base.parameters()).device
        with torch.device("meta"):  # no random initialisation: every parameter is overwritten by refresh()
            model = type(base)(copy.deepcopy(base.config))
        model = model.to_empty(device=device)
        if hasattr(model, "tie_weights"):  # to_empty gives tied parameters separate storage: tie them again
            model.tie_weights()
        # buffers (RoPE frequencies) are computed at construction, which meta skipped: take the policy's,
        # in float32. requires_grad stays True although the copy only runs under no_grad: with frozen bf16
        # parameters generate() measured 1.3x slower here (torch 2.13, CPU); the copy is no module of
        # the policy, so no optimizer ever sees it.
        own = dict(base.named_buffers())
        for name, buf in model.named_buffers():
            buf.copy_(own[name])
        for p in model.parameters():
            p.data = torch.empty_like(p.data, dtype=self.dtype)
        if getattr(base, "generation_config", None) is not None:
            model.generation_config = copy.deepcopy(base.generation_config)
        return model.eval()

    @torch.no_grad()
    def refresh(self, policy: torch.nn.Module) -> torch.nn.Module:
        """Bring the copy up to date with ``policy`` (possibly DDP-wrapped) and return it."""
        inner = unwrap(policy)
        base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
        if self.model is None:
            self.model = self._build(base)
        target = dict(self.model.named_parameters())
        merged: set[str] = set()
        written: set[str] = set()
        try:
            from peft.tuners.lora import LoraLayer
        except ImportError:  # pragma: no cover - peft is a dependency
            LoraLayer = ()  # noqa: N806
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer):
                target[name + ".weight"].copy_(effective_weight(module))
                merged.add(name + ".weight")
                written.add(name + ".weight")
        for name, p in base.named_parameters():
            if "lora_" in name or name.startswith(self.skip):
                continue
            key = name.replace(".base_layer", "")
            if key in merged or (self._copied_frozen and not p.requires_grad):
                continue
            if key not in target:
                raise RolloutBackendError(f"rollout_dtype: the inference copy has no parameter {key!r} "
                                          "(a model the copy cannot mirror; unset rollout_dtype)")
            target[key].copy_(p)
            written.add(key)
        if not self._copied_frozen and written != set(target):
            missing = sorted(set(target) - written)[:3]
            raise RolloutBackendError(f"rollout_dtype: the policy has no weights for {missing} of its inference "
                                      "copy (a model the copy cannot mirror; unset rollout_dtype)")
        self._copied_frozen = True
        return self.model


class HFRolloutBackend:
    """Generation with Hugging Face ``generate`` on the training model, or on an :class:`InferenceCopy`
    in ``dtype`` (see the module docstring)."""

    name = "hf"
    returns_logps = False

    def __init__(self, settings: SamplingSettings, dtype: str | None = None, skip: Sequence[str] = ()) -> None:
        if settings.temperature <= 0:
            raise ValueError("online RL samples its completions: temperature must be > 0")
        if dtype is not None and dtype not in ROLLOUT_DTYPES:
            raise ValueError(f"rollout_dtype must be one of {', '.join(ROLLOUT_DTYPES)} (or unset), got {dtype!r}")
        self.settings = settings
        self.copy = InferenceCopy(ROLLOUT_DTYPES[dtype], skip) if dtype is not None else None

    def sync(self, model: torch.nn.Module, step: int, probe: Sequence[int] | None = None,
             force: bool = False) -> SyncReport:
        """Nothing to push: every rollout samples from the current weights (the copy refreshes itself)."""
        return SyncReport(fresh=True)

    def close(self) -> None:
        pass

    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *,
                 num_generations: int, seed: int) -> Rollout:
        s = self.settings
        if self.copy is None:
            sampler, how = unwrap(model), "auto"
        else:  # the copy is merged already: the lean forward's own merged copy would be a third one
            sampler, how = self.copy.refresh(model), "hf" if os.environ.get("ALIGNKIT_SAMPLER") == "hf" else "fast"
        return sample_completions(
            sampler, prompt_ids, pad_id=s.pad_id, eos_id=list(s.eos_ids), max_new_tokens=s.max_new_tokens,
            temperature=s.temperature, top_p=s.top_p, num_generations=num_generations, generator_seed=seed,
            sampler=how)


def rollout_from_token_lists(prompt_ids: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], *,
                             pad_id: int, eos_ids: Sequence[int], max_new_tokens: int,
                             num_generations: int, device: torch.device | str = "cpu",
                             logps: Sequence[Sequence[float]] | None = None) -> RolloutWithLogps:
    """Build a :class:`Rollout` from token lists produced elsewhere (vLLM, a server, a test).

    ``completions`` holds ``len(prompt_ids) * num_generations`` token lists grouped per prompt. Each
    is cut after its first EOS (kept) and at ``max_new_tokens``; prompts are left-padded and
    completions right-padded with ``pad_id``, with the same masks as :func:`sample_completions`.
    ``logps`` (optional, one float per completion token) are cut the same way and returned as the
    ``logps`` [N, C] of the :class:`RolloutWithLogps` (0 on padding); without them ``logps`` is None.
    """
    if len(completions) != len(prompt_ids) * num_generations:
        raise ValueError(f"{len(completions)} completions for {len(prompt_ids)} prompts x {num_generations}")
    if logps is not None and (len(logps) != len(completions)
                              or any(len(lp) != len(c) for lp, c in zip(logps, completions))):
        raise ValueError("logps must hold one value per completion token")
    eos = {int(e) for e in eos_ids}
    cut, truncated = [], []
    for c in completions:
        c = [int(t) for t in c][:max_new_tokens]
        end = next((i for i, t in enumerate(c) if t in eos), None)
        if end is not None:
            c = c[: end + 1]
        truncated.append(end is None)
        cut.append(c)
    if any(len(c) == 0 for c in cut):
        raise ValueError("a completion is empty (every completion needs at least one token)")
    P = max(len(p) for p in prompt_ids)
    C = max(len(c) for c in cut)
    N = len(cut)
    seq = torch.full((N, P + C), int(pad_id), dtype=torch.long)
    attn = torch.zeros((N, P + C), dtype=torch.long)
    for i, c in enumerate(cut):
        p = list(prompt_ids[i // num_generations])
        seq[i, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        attn[i, P - len(p):P] = 1
        seq[i, P:P + len(c)] = torch.tensor(c, dtype=torch.long)
        attn[i, P:P + len(c)] = 1
    lp = None
    if logps is not None:
        lp = torch.zeros((N, C), dtype=torch.float32)
        for i, c in enumerate(cut):
            lp[i, :len(c)] = torch.tensor([float(v) for v in logps[i][:len(c)]], dtype=torch.float32)
        lp = lp.to(device)
    return RolloutWithLogps(sequences=seq.to(device), attention_mask=attn.to(device),
                            completion_mask=attn[:, P:].to(device), prompt_length=P, completion_ids=cut,
                            truncated=torch.tensor(truncated, device=device), num_generations=num_generations,
                            logps=lp)


class VLLMRolloutBackend:
    """Generation with vLLM on a CUDA GPU, colocated with training (one process per GPU).

    Before each :meth:`generate` the policy's current weights are copied into the vLLM engine (for a
    peft model the adapters are merged for the copy and unmerged afterwards). This backend needs the
    ``vllm`` package and a CUDA GPU; constructing it without them raises :class:`RolloutBackendError`.
    It is not covered by the CPU test suite.
    """

    name = "vllm"
    returns_logps = True

    def __init__(self, settings: SamplingSettings, model_path: str, *, gpu_memory_utilization: float = 0.3,
                 max_model_len: int | None = None, dtype: str = "auto") -> None:
        if importlib.util.find_spec("vllm") is None:
            raise RolloutBackendError("rollout_backend=vllm needs the `vllm` package and a CUDA GPU; vllm is not "
                                      "installed here (pip install vllm on a GPU machine), or use rollout_backend=hf")
        if not torch.cuda.is_available():
            raise RolloutBackendError("rollout_backend=vllm needs a CUDA GPU and none is visible; use rollout_backend=hf")
        if settings.temperature <= 0:
            raise ValueError("online RL samples its completions: temperature must be > 0")
        import os

        # weights are pushed into the engine in-process, which needs vLLM's engine in this process
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.settings = settings
        # processed_logprobs: the log-probs of the sampled tokens after temperature / top-p, i.e. of the
        # distribution actually sampled (the default, raw_logprobs, ignores the temperature)
        self.llm = LLM(model=str(model_path), gpu_memory_utilization=gpu_memory_utilization,
                       max_model_len=max_model_len, dtype=dtype, enable_prefix_caching=True,
                       logprobs_mode="processed_logprobs")

    def _engine_model(self) -> torch.nn.Module:
        engine = self.llm.llm_engine
        for path in ("model_executor.driver_worker.worker.model_runner.model",
                     "model_executor.driver_worker.model_runner.model"):
            obj: Any = engine
            try:
                for attr in path.split("."):
                    obj = getattr(obj, attr)
            except AttributeError:
                continue
            return obj
        raise RolloutBackendError("this vLLM version does not expose its model in-process; weight sync "
                                  "is not supported with it (use rollout_backend=hf)")

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Copy the current policy weights into the vLLM engine (LoRA merged for the copy)."""
        inner = unwrap(model)
        peft = hasattr(inner, "merge_adapter") and hasattr(inner, "get_base_model")
        if peft:
            inner.merge_adapter()
        try:
            items = []
            for name, p in inner.state_dict().items():
                if "lora_" in name or "modules_to_save" in name:
                    continue
                name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                items.append((name, p))
            self._engine_model().load_weights(items)
        finally:
            if peft:
                inner.unmerge_adapter()
        if hasattr(self.llm, "reset_prefix_cache"):
            self.llm.reset_prefix_cache()

    def sync(self, model: torch.nn.Module, step: int, probe: Sequence[int] | None = None,
             force: bool = False) -> SyncReport:
        """Nothing here: :meth:`generate` copies the weights in before every generation."""
        return SyncReport(fresh=True)

    def close(self) -> None:
        pass

    def generate(self, model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]], *,
                 num_generations: int, seed: int) -> RolloutWithLogps:
        from vllm import SamplingParams

        self.sync_weights(model)
        s = self.settings
        params = SamplingParams(n=num_generations, temperature=s.temperature, top_p=s.top_p,
                                max_tokens=s.max_new_tokens, seed=seed, stop_token_ids=list(s.eos_ids), logprobs=0)
        outs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompt_ids], params, use_tqdm=False)
        completions, logps = [], []
        for out in outs:
            for o in out.outputs:
                ids = list(o.token_ids)
                completions.append(ids or [s.pad_id])
                lp = [float(pos[t].logprob) for pos, t in zip(o.logprobs or [], ids)]
                logps.append(lp if ids and len(lp) == len(ids) else None)
        device = next(unwrap(model).parameters()).device
        return rollout_from_token_lists(prompt_ids, completions, pad_id=s.pad_id, eos_ids=s.eos_ids,
                                        max_new_tokens=s.max_new_tokens, num_generations=num_generations,
                                        device=device, logps=None if any(v is None for v in logps) else logps)


def rollout_dtype(config: Any, accelerator: Any) -> str | None:
    """The sampling copy's dtype for the hf backend: ``config.rollout_dtype`` when set; otherwise
    bfloat16 under bf16 mixed precision (generating from float32 weights under autocast casts every
    weight matrix at every token: a SmolLM2-135M GRPO step took 6.9 s instead of 5.1 s in float32 on
    CPU), else None (the training model samples itself)."""
    if getattr(config, "rollout_dtype", None) is not None:
        return config.rollout_dtype
    return "bfloat16" if getattr(accelerator, "mixed_precision", "no") == "bf16" else None


def make_backend(name: str, settings: SamplingSettings, *, model_path: str | None = None,
                 **kwargs: Any) -> RolloutBackend:
    """The backend called ``name`` (``hf``, ``vllm`` or ``vllm-server``; for ``vllm-server`` the
    keyword arguments are those of :func:`alignkit.generation.server.open_server_backend`)."""
    if name == "hf":
        return HFRolloutBackend(settings, **kwargs)
    if name == "vllm":
        if model_path is None:
            raise RolloutBackendError("rollout_backend=vllm needs a model directory it can load")
        return VLLMRolloutBackend(settings, model_path, **kwargs)
    if name == "vllm-server":
        from alignkit.generation.server import open_server_backend

        return open_server_backend(settings, **kwargs)
    raise ValueError(f"unknown rollout backend {name!r}; expected one of {', '.join(BACKENDS)}")

"""``alignkit grpo``: group-relative policy optimisation and its family (DAPO, Dr. GRPO, RLOO, REINFORCE++).

One optimizer step:

1. **Rollout** (``prepare_step``): each of this process's ``grad_accum`` micro-batches holds
   ``batch_size`` *prompts*; the policy samples ``num_generations`` (G) completions for each (one
   ``generate`` call per micro-batch, seeded from ``(seed, step, rank, micro-batch)`` so that a resumed
   run samples exactly what an uninterrupted one did). A micro-batch therefore trains on
   ``batch_size * G`` sequences, and all G completions of a prompt sit in the same micro-batch on the
   same process, so group statistics need no communication. (TRL counts *completions* per device
   instead; ``batch_size=2 num_generations=4``, the defaults here, is TRL's ``per_device_train_batch_size=8``.)
2. **Rewards**: the :class:`~alignkit.rewards.RewardSet` built from ``reward=`` (README "Reward functions") scores every
   completion; the total is the ``reward_weights``-weighted sum.
3. **Advantages** (``advantage=``): ``grpo`` (r - group mean) / (group std + 1e-4), without the division
   when ``scale_rewards=false`` (Dr. GRPO); ``rloo`` leave-one-out baseline; ``reinforce_pp``
   REINFORCE++-baseline (group-centred, then whitened over the step's whole batch, all processes).
   ``dynamic_sampling=true`` drops groups whose rewards are all equal (DAPO; no re-sampling: the step
   trains on fewer groups, and on none at all if every group is flat - it then contributes zero loss).
4. **Log-probs**: the G completions of a prompt share one prompt forward (``share_prompt``, default
   on: its KV cache is repeated G times, so prompt tokens cost 1/G; see
   :func:`alignkit.logprobs.shared_prompt_token_logps`). With ``num_iterations=1`` the old policy *is*
   the current one, so old log-probs are the detached current ones (no extra forward). With ``beta>0`` the reference log-probs come from the
   base model with the LoRA adapters disabled, or from one frozen copy in full fine-tuning; with
   ``beta=0`` no reference is built or run at all.
5. **Loss** (``loss``): the clipped surrogate :func:`alignkit.losses.grpo_loss` (``eps_low``/``eps_high``,
   clip-higher when ``eps_high > eps_low``) plus ``beta`` times the k3 KL, normalised over the *global*
   batch as ``loss_type`` says: ``dapo`` (default) sum over all completion tokens / number of tokens;
   ``grpo`` sum over sequences of each sequence's token mean / number of sequences; ``dr_grpo`` sum over
   all tokens / (number of sequences x ``max_new_tokens``). The engine does the division (see
   ``count_units``), so gradient accumulation and several processes give the same update.

``num_iterations`` = mu > 1 (several optimizer steps per rollout): steps ``k*mu .. k*mu + mu - 1`` form
block k. At the block's first step the rollout is generated from the prompts the engine hands that step,
and the sampling policy's per-token log-probs (``old_logps``) are computed once by a no-grad forward;
the next mu - 1 steps train on the same rollout (same advantages, same old log-probs, so the ratio and
the clipping do their job). The engine hands all mu steps of a block the same prompts
(:attr:`steps_per_batch`), so every prompt is used and an epoch takes mu times as many steps (as in
TRL). The rollout of the current block is also
written to ``OUTPUT_DIR/rollouts/`` (safetensors), so a run interrupted in the middle of a block resumes
on the very same rollout.

Prompts: ``max_prompt_length`` (default ``max_length - max_new_tokens``) keeps the last tokens of a
longer prompt; a prompt of ``max_length`` tokens or more is a malformed row.

Evaluation (``eval_data``): each held-out prompt gets G sampled completions (fixed seeds, so every
evaluation uses the same random numbers; ``eval_temperature=0``: one greedy completion) and the logged
``eval_reward``/``eval_rewards/NAME`` are their mean rewards (``eval_loss`` is 0: there is no loss without a
rollout to compare against).

Metrics (TRL's names): ``reward`` (mean total reward), ``reward_std`` (std of the step's rewards),
``rewards/NAME`` (each source's mean raw reward), ``frac_reward_zero_std`` (fraction of groups without
reward spread), ``completion_length``, ``completions/clipped_ratio`` (fraction without EOS),
``entropy``, ``clip_ratio`` (and ``clip_ratio/low_mean``, ``clip_ratio/high_mean``), ``kl`` (beta > 0),
and the engine's ``loss``, ``grad_norm``, ``learning_rate``, ``tokens_per_second``; with a rollout backend that
reports log-probs (``vllm``, ``vllm-server``) also ``rollout/logprob_gap`` (and ``_max``), ``rollout/is_weight``
(``rollout_is_cap``), ``rollout/weights_synced`` and ``rollout/sync_probe_gap`` (see
:class:`alignkit.methods.online.RolloutGuard`). Sample completions
go to ``OUTPUT_DIR/completions.jsonl`` every ``log_completions_steps`` steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from alignkit.config import ConfigError, TrainConfig
from alignkit.engine.method import StepOutput
from alignkit.generation.backends import rollout_seed, sync_backend
from alignkit.losses import grpo_loss_with_stats
from alignkit.methods.common import unwrap
from alignkit.methods.online import (
    PromptMethod,
    ServerRolloutKeys,
    completion_token_logps,
    compute_advantages,
    group_stats,
    mark_rollout,
    reference_token_logps,
    rollout_batch,
    score_rollout,
    trim_padding,
)
from alignkit.methods.reference import Reference, announce, build_reference
from alignkit.methods.rollout_store import CompletionLog, RolloutStore
from alignkit.scoring import load_reward_functions


class GRPOConfig(TrainConfig, ServerRolloutKeys):
    """GRPO family: GRPO, DAPO, Dr. GRPO losses; GRPO, RLOO, REINFORCE++ advantages (reward=FILE.py:FUNC)."""

    batch_size: int = Field(2, ge=1, description="prompts per device per micro-batch; each is sampled num_generations "
                            "times (2 x 4 = TRL's 8 completions per device)")
    reward: str | list[str] | None = Field(None, description="FILE.py:FUNC, package.module:FUNC, rm:PATH, judge:MODEL, or a list")
    reward_weights: list[float] | None = Field(None, description="one weight per reward source (default all 1)")
    num_generations: int = Field(4, ge=2, description="completions sampled per prompt (the group size G)")
    max_new_tokens: int = Field(64, ge=1, description="longest completion, in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (also applied to the log-probs)")
    eval_temperature: float | None = Field(None, ge=0, description="evaluation (eval_data): sampling temperature "
                                           "(default temperature); 0: one greedy completion per prompt")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    beta: float = Field(0.0, ge=0, description="k3 KL weight; 0: no reference model at all")
    eps_low: float = Field(0.2, ge=0, lt=1, description="lower clip range: ratio >= 1 - eps_low")
    eps_high: float = Field(0.2, ge=0, description="upper clip range: ratio <= 1 + eps_high (clip-higher if larger)")
    epsilon: float | None = Field(None, ge=0, lt=1, description="sets eps_low and eps_high when those are not given")
    loss_type: Literal["grpo", "dapo", "dr_grpo"] = Field("dapo", description="loss aggregation: grpo, dapo or dr_grpo (README 'Online RL')")
    scale_rewards: bool = Field(True, description="divide group-centred rewards by the group std (advantage=grpo)")
    advantage: Literal["grpo", "rloo", "reinforce_pp"] = Field("grpo", description="advantage estimator")
    dynamic_sampling: bool = Field(False, description="drop groups whose rewards are all equal")
    num_iterations: int = Field(1, ge=1, description="optimizer steps per rollout (mu)")
    log_completions_steps: int = Field(10, ge=0, description="write sample completions every N steps; 0: never")
    max_prompt_length: int | None = Field(None, ge=1, description="keep the last N prompt tokens "
                                          "(default max_length - max_new_tokens)")
    rollout_backend: Literal["hf", "vllm", "vllm-server"] = Field(
        "hf", description="generation engine: hf, vllm (in-process, needs vllm + a GPU) or vllm-server (an "
        "OpenAI-compatible vLLM server, started from .venv-vllm or vllm_url=)")
    share_prompt: bool = Field(True, description="training forward: run each prompt once per group of "
                               "num_generations completions (KV cache shared; same numbers, less compute)")
    rollout_dtype: Literal["float32", "bfloat16"] | None = Field(
        None, description="hf backend: sample from a copy of the policy in this dtype with LoRA merged, refreshed "
        "each rollout (bfloat16: ~1.7x faster sampling on CPUs with AMX); unset: bfloat16 under bf16 mixed "
        "precision, else the training model samples itself")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="GPU memory share of vLLM")

    @model_validator(mode="before")
    @classmethod
    def _epsilon_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("epsilon") is not None:
            data = dict(data)
            data.setdefault("eps_low", data["epsilon"])
            data.setdefault("eps_high", data["epsilon"])
        return data

    @model_validator(mode="after")
    def _check(self) -> GRPOConfig:
        if self.rollout_dtype is not None and self.rollout_backend != "hf":
            raise ValueError("rollout_dtype applies to rollout_backend=hf (vLLM sets its own dtype); unset one of them")
        if self.max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be smaller than max_length "
                             f"({self.max_length}): prompt and completion share max_length")
        return self


class GRPO(PromptMethod):
    name = "grpo"
    config_cls = GRPOConfig

    def __init__(self, config: GRPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if config.reward is None:
            raise ConfigError("grpo needs a reward: reward=FILE.py:FUNC (or package.module:FUNC, rm:PATH, or a list "
                              "with reward_weights); shipped ones: reward=format.py:word_limit, "
                              "reward=tokens.py:even_token_fraction")
        self.rewards = load_reward_functions(config.reward, config.reward_weights)
        self.accelerator: Any = None
        self.backend: Any = None
        self.reference: Reference | None = None
        self.completion_log: CompletionLog | None = None
        self.store = RolloutStore(config.output_dir, config.num_iterations)
        self._first_step: int | None = None

    # -- data ---------------------------------------------------------------------------------
    def count_units(self, batch: dict[str, Any]) -> int:
        if "completion_mask" not in batch or batch.get("loss_weight", 1.0) == 0.0:
            return 0  # a prompt batch (evaluation) or a placeholder that trains nothing
        mask = batch["completion_mask"]
        if self.config.loss_type == "dapo":
            return int(mask.sum())
        if self.config.loss_type == "grpo":
            return int(mask.shape[0])
        return int(mask.shape[0]) * self.config.max_new_tokens  # dr_grpo

    # -- set-up -------------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, accelerator: Any) -> None:
        cfg = self.config
        self.accelerator = accelerator
        self.backend = self.rollout_backend(model, accelerator)
        from alignkit.scoring import bind_policy

        if bind_policy(self.rewards, model, self.tokenizer):
            announce("grpo: judge:self - the policy judges its own samples", accelerator)
        if cfg.beta > 0:
            self.reference = build_reference(model, accelerator, precompute=False)
            announce(f"grpo beta={cfg.beta}: reference = {self.reference.how}", accelerator)
        self.completion_log = CompletionLog(cfg.output_dir, cfg.log_completions_steps,
                                            enabled=accelerator.is_main_process)
        self.store = RolloutStore(cfg.output_dir, cfg.num_iterations, rank=accelerator.process_index,
                                  device=accelerator.device)

    # -- rollout ------------------------------------------------------------------------------
    def prepare_step(self, model: torch.nn.Module, batches: list[dict[str, Any]],
                     step: int) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
        if self._first_step is None:
            self._first_step = step
            if self.completion_log is not None:
                self.completion_log.start(step)
        stored = self.store.lookup(step)
        if stored is not None:
            return stored
        if self.store.missing is not None and self.store.missing == step // self.config.num_iterations:
            mu = self.config.num_iterations
            announce(f"grpo: no saved rollout for steps {self.store.missing * mu + 1}-{self.store.missing * mu + mu}; "
                     "sampling a new one from the current policy (the resumed run will differ from an "
                     "uninterrupted one)", self.accelerator)
            self.store.missing = None
        micro, metrics = self.rollout(model, batches, step)
        self.store.put(step, micro, metrics)
        return micro, metrics

    def rollout(self, model: torch.nn.Module, batches: list[dict[str, Any]],
                step: int) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
        """Generate, score and prepare the micro-batches of one rollout (see the module docstring)."""
        cfg, acc = self.config, self.accelerator
        G = cfg.num_generations
        rank = acc.process_index if acc is not None else 0
        device = acc.device if acc is not None else next(unwrap(model).parameters()).device
        report = self.sync_backend(model, batches, step)
        parts = []
        for k, batch in enumerate(batches):
            with self._autocast():  # bf16 generation under mixed precision; log-probs are recomputed anyway
                ro = self.backend.generate(model, batch["prompt_ids"], num_generations=G,
                                           seed=rollout_seed(cfg.seed, step, rank, k))
            total, per, prompts, texts = score_rollout(self.rewards, self.tokenizer, batch, ro)
            part = {"tensors": rollout_batch(ro), "rewards": total, "per": per, "prompts": prompts,
                    "texts": texts, "truncated": ro.truncated.cpu()}
            self.score_part(part, batch, ro)
            parts.append(part)

        rewards = torch.cat([p["rewards"] for p in parts])
        advantages = self._advantages(rewards)
        metrics = self._rollout_metrics(parts, rewards)
        metrics.update({k: (float(v), 1.0) for k, v in report.metrics.items()})
        advantages = self.adjust_advantages(parts, advantages, metrics, step)

        due = self.completion_log is not None and any(self.completion_log.due(s)
                                                      for s in range(step + 1, step + cfg.num_iterations + 1))
        if due:
            per_all = {n: torch.cat([p["per"][n] for p in parts]).tolist() for n in self.rewards.names}
            self.completion_log.write(step + 1, [q for p in parts for q in p["prompts"]],
                                      [t for p in parts for t in p["texts"]], rewards.tolist(), per_all,
                                      advantages.tolist())

        micro, start = [], 0
        for p in parts:
            n = p["rewards"].numel()
            t = dict(p["tensors"])
            t["advantages"] = advantages[start:start + n].to(device=device, dtype=torch.float32)
            start += n
            if cfg.dynamic_sampling:
                _, spread = group_stats(p["rewards"], G)
                keep = spread.repeat_interleave(G).nonzero().squeeze(1)
                if keep.numel() == 0:
                    continue
                if keep.numel() < n:
                    t = {k: v.index_select(0, keep.to(v.device)) for k, v in t.items()}
            micro.append(mark_rollout(trim_padding(t), report.fresh))
        if not micro:  # every group was flat: one placeholder micro-batch that trains nothing
            t = {k: v[:G] for k, v in parts[0]["tensors"].items()}
            t["advantages"] = torch.zeros(G, device=device)
            t = trim_padding(t)
            t.pop("rollout_logps", None)
            t["loss_weight"] = 0.0
            micro = [t]

        if cfg.num_iterations > 1 or self.reference is not None:
            with torch.no_grad(), self._autocast():
                for t in micro:
                    if cfg.num_iterations > 1:  # the sampling policy's log-probs, once per rollout
                        t["old_logps"] = completion_token_logps(unwrap(model), t, cfg.temperature,
                                                                group_size=self._group_size).float()
                    if self.reference is not None:
                        t["ref_logps"] = reference_token_logps(self.reference, t, cfg.temperature,
                                                               group_size=self._group_size)
        return micro, metrics

    def score_part(self, part: dict[str, Any], batch: dict[str, Any], ro: Any) -> None:
        """Hook: add more scores of one micro-batch's rollout to ``part`` (safe-grpo adds its costs)."""

    def adjust_advantages(self, parts: list[dict[str, Any]], advantages: torch.Tensor,
                          metrics: dict[str, tuple[float, float]], step: int) -> torch.Tensor:
        """Hook: the advantages the step trains on, from the reward advantages (safe-grpo: the Lagrangian)."""
        return advantages

    @property
    def steps_per_batch(self) -> int:
        return self.config.num_iterations

    @property
    def _group_size(self) -> int:
        return self.config.num_generations if self.config.share_prompt else 1

    def _autocast(self):
        return self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext()

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        cfg, acc = self.config, self.accelerator
        G = cfg.num_generations
        if cfg.advantage == "reinforce_pp" and acc is not None and acc.num_processes > 1:
            # whitened over the global batch: every process holds the same number of completions here
            everyone = acc.gather(rewards.to(acc.device)).cpu()
            n = rewards.numel()
            return compute_advantages(everyone, G, "reinforce_pp")[acc.process_index * n:(acc.process_index + 1) * n]
        return compute_advantages(rewards, G, cfg.advantage, scale=cfg.scale_rewards)

    def _rollout_metrics(self, parts: list[dict], rewards: torch.Tensor) -> dict[str, tuple[float, float]]:
        G = self.config.num_generations
        N = float(rewards.numel())
        std, spread = group_stats(rewards, G)
        lengths = torch.cat([p["tensors"]["completion_mask"].sum(1).float().cpu() for p in parts])
        truncated = torch.cat([p["truncated"] for p in parts])
        metrics: dict[str, tuple[float, float]] = {
            "reward": (float(rewards.sum()), N),
            "reward_std": (float(rewards.std()) if rewards.numel() > 1 else 0.0, 1.0),
            "frac_reward_zero_std": (float((~spread).sum()), float(spread.numel())),
            "completion_length": (float(lengths.sum()), N),
            "completions/clipped_ratio": (float(truncated.float().sum()), N),
        }
        for name in self.rewards.names:
            metrics[f"rewards/{name}"] = (float(torch.cat([p["per"][name] for p in parts]).sum()), N)
        return metrics

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> StepOutput:
        if "completion_mask" not in batch:
            return self._evaluate_prompts(model, batch)
        cfg = self.config
        logps, entropy = completion_token_logps(model, batch, cfg.temperature, with_entropy=True,
                                                group_size=self._group_size)
        mask = batch["completion_mask"]
        old = batch.get("old_logps")
        if old is None:
            old = logps.detach()
        weights, guard_metrics = self.guard.observe(batch, old, mask, step)
        loss, stats = grpo_loss_with_stats(logps, old, batch["advantages"], mask, batch.get("ref_logps"),
                                           beta=cfg.beta, eps_low=cfg.eps_low, eps_high=cfg.eps_high,
                                           loss_type=cfg.loss_type, token_weights=weights)
        n_seq, width = mask.shape
        n_tok = mask.sum().float()
        scale = {"dapo": n_tok, "grpo": float(n_seq), "dr_grpo": float(n_seq * width)}[cfg.loss_type]
        loss_sum = loss * scale * float(batch.get("loss_weight", 1.0))
        tok = float(n_tok)
        metrics = {"entropy": (float((entropy * mask).sum()), tok)}
        for key, value in stats.items():
            metrics[key] = (float(value) * tok, tok)
        metrics.update(guard_metrics)
        return StepOutput(loss_sum=loss_sum, metrics=metrics)

    def score_eval(self, batch: dict[str, Any], ro: Any, metrics: dict[str, tuple[float, float]]) -> None:
        """Hook: more (sum, count) metrics of an evaluation rollout (safe-grpo adds its costs)."""

    def _evaluate_prompts(self, model: torch.nn.Module, batch: dict[str, Any]) -> StepOutput:
        """Mean rewards of sampled completions for held-out prompts (called by the engine's evaluation)."""
        cfg = self.config
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        first_row = int(batch["rows"][0] or 0) if batch.get("rows") else 0
        sync_backend(self.backend, model, self._steps_done, batch["prompt_ids"][0], force=True)  # current weights
        temperature = cfg.temperature if cfg.eval_temperature is None else cfg.eval_temperature
        rollout_settings = self.backend.settings
        self.backend.settings = dataclasses.replace(rollout_settings, temperature=temperature)
        try:
            ro = self.backend.generate(model, batch["prompt_ids"], num_generations=cfg.num_generations if temperature
                                       else 1, seed=rollout_seed(cfg.seed, -1 - first_row, rank, 0))
        finally:
            self.backend.settings = rollout_settings
        total, per, _, _ = score_rollout(self.rewards, self.tokenizer, batch, ro)
        N = float(total.numel())
        metrics = {"reward": (float(total.sum()), N),
                   "completion_length": (float(ro.completion_mask.sum()), N)}
        for name, values in per.items():
            metrics[f"rewards/{name}"] = (float(values.sum()), N)
        self.score_eval(batch, ro, metrics)
        return StepOutput(loss_sum=torch.zeros((), device=ro.sequences.device), metrics=metrics)

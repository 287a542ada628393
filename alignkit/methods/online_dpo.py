"""``alignkit online-dpo``: DPO on pairs sampled from the current policy and labelled as training goes.

One optimizer step:

1. **Rollout** (``prepare_step``): each of this process's ``grad_accum`` micro-batches holds
   ``batch_size`` *prompts*; the policy samples ``num_generations`` (G >= 2) completions for each,
   seeded from ``(seed, step, rank, micro-batch)`` with :func:`alignkit.generation.backends.rollout_seed` (the
   same sampling code as GRPO), so a resumed run samples exactly what an uninterrupted one did.
2. **Labelling**: the ``reward=`` sources score every completion (README "Reward functions": ``FILE.py:FUNC``,
   ``package.module:FUNC``, ``rm:PATH``, ``judge:MODEL``, or a weighted list); ``missing_eos_penalty``
   is subtracted from completions that hit ``max_new_tokens`` without ending. The LLM judges are seeded
   from ``seed`` and the judged texts, so their scores are reproducible too.
3. **Pairs**: per prompt, chosen = the highest-scored completion, rejected = the lowest-scored one
   (first one on equal scores). A prompt whose completions all score the same (a tie), or whose best
   and worst completions are the same tokens, gives no pair (``pairs_kept`` is the fraction of
   prompts that gave one). With G = 2 this is TRL's online DPO; larger G gives more contrast.
4. **DPO step** with any ``loss=`` of :func:`alignkit.losses.preference_loss` (``sigmoid`` default,
   ``hinge``, ``ipo``, ``robust``, ``simpo``, ``orpo``) and the DPO keys (``beta``,
   ``label_smoothing``, ``gamma``, ``lam``, ``rpo_alpha``). Policy log-probs are the summed per-token
   log-probs of the completion tokens (EOS included) at temperature 1. The reference is computed on the
   fly in the rollout stage, without gradients: the LoRA policy with adapters disabled, or one frozen
   copy in full fine-tuning (the offline precompute cannot apply: the pairs do not exist before the
   step); the reference-free losses (simpo, orpo) run none. A loss unit is a pair.

Judges (``reward=judge:MODEL``): ``judge:self`` is the policy being trained (its current weights judge
its own samples), ``judge:PATH_OR_NAME`` another local model, ``judge:http://HOST:PORT/v1`` an
OpenAI-compatible endpoint (``judge_model`` names the model; API key in ``ALIGNKIT_JUDGE_API_KEY``).
``judge_samples`` samples at ``judge_temperature`` (at most ``judge_max_new_tokens`` tokens) are averaged;
a completion without any parsable score gets ``judge_unparsable``; ``judge_force_score=true`` (local judges)
reads a missing score from the judge's most likely next token after ``"Score:"`` instead, which small
judges need (SmolLM2-135M judging itself rarely writes the score line). A query string on the spec overrides
these per judge (``judge:self?samples=5``).

Evaluation (``eval_data``): G sampled completions per held-out prompt (fixed seeds) and their mean
``eval_reward``, ``eval_rewards/NAME``, ``eval_pairs_kept`` (``eval_loss`` is 0).

Metrics: the DPO ones (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
``rewards/accuracies``, ``logps/chosen``, ``logps/rejected``, ``nll_loss`` with ``rpo_alpha``),
``reward`` (mean score of all sampled completions), ``reward_std``, ``rewards/NAME`` (each source),
``reward_margin`` (mean score of chosen minus rejected over kept pairs), ``pairs_kept``,
``completion_length``, ``completions/clipped_ratio``, with LLM judges ``judge/parse_rate`` (fraction of
judge samples with a valid ``Score: N`` line) and ``judge/forced_rate`` (with ``judge_force_score``), and
the engine's ``loss``, ``grad_norm``, ``learning_rate``, ``tokens_per_second``. Sample completions go to
``OUTPUT_DIR/completions.jsonl`` every ``log_completions_steps`` steps.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from alignkit.config import ConfigError
from alignkit.data.pairs import pick_pair
from alignkit.engine.method import StepOutput
from alignkit.generation.backends import (
    rollout_seed,
)
from alignkit.methods.common import unwrap
from alignkit.methods.dpo import DPOConfig, dpo_family_loss
from alignkit.methods.online import (
    PromptMethod,
    ServerRolloutKeys,
    completion_token_logps,
    mark_rollout,
    reference_token_logps,
    rollout_batch,
    score_rollout,
    trim_padding,
)
from alignkit.methods.reference import Reference, announce, build_reference
from alignkit.methods.rollout_store import CompletionLog
from alignkit.rewards import RewardSet
from alignkit.scoring import load_reward_source, parse_reward_spec


class OnlineDPOConfig(DPOConfig, ServerRolloutKeys):
    """Online DPO: pairs sampled from the policy each step, labelled by reward= (functions, rm:PATH, judge:MODEL)."""

    batch_size: int = Field(2, ge=1, description="prompts per device per micro-batch; each is sampled "
                            "num_generations times")
    reward: str | list[str] | None = Field(None, description="FILE.py:FUNC, package.module:FUNC, rm:PATH, "
                                           "judge:MODEL (judge:self, judge:PATH, judge:http://...), or a list")
    reward_weights: list[float] | None = Field(None, description="one weight per reward source (default all 1)")
    num_generations: int = Field(2, ge=2, description="completions sampled per prompt; the best and the worst "
                                 "form the pair")
    max_new_tokens: int = Field(64, ge=1, description="longest completion, in tokens")
    temperature: float = Field(0.9, gt=0, description="sampling temperature of the rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    missing_eos_penalty: float | None = Field(None, ge=0, description="subtracted from the score of a completion "
                                              "that did not end within max_new_tokens")
    max_prompt_length: int | None = Field(None, ge=1, description="keep the last N prompt tokens "
                                          "(default max_length - max_new_tokens)")
    log_completions_steps: int = Field(10, ge=0, description="write sample completions every N steps; 0: never")
    rollout_backend: Literal["hf", "vllm", "vllm-server"] = Field(
        "hf", description="generation engine: hf, vllm (in-process, needs vllm + a GPU) or vllm-server (an "
        "OpenAI-compatible vLLM server, started from .venv-vllm or vllm_url=)")
    rollout_dtype: Literal["float32", "bfloat16"] | None = Field(
        None, description="hf backend: sample from a copy of the policy in this dtype with LoRA merged, refreshed "
        "each rollout (bfloat16: ~1.7x faster sampling on CPUs with AMX); unset: bfloat16 under bf16 mixed "
        "precision, else the training model samples itself")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="GPU memory share of vLLM")
    judge_samples: int = Field(3, ge=1, description="judge:MODEL: samples per completion, averaged")
    judge_temperature: float = Field(0.7, ge=0, description="judge:MODEL: sampling temperature of the judge")
    judge_max_new_tokens: int = Field(256, ge=1, description="judge:MODEL: longest judge reply, in tokens")
    judge_model: str | None = Field(None, description="judge:http://...: the model name sent to the endpoint "
                                    "(default: the first one it lists)")
    judge_timeout: float = Field(60.0, gt=0, description="judge:http://...: seconds per request")
    judge_unparsable: float = Field(0.0, description="judge:MODEL: score of a completion no judge sample "
                                    "gave a valid score for")
    judge_force_score: bool = Field(False, description="judge:self / local judges: read a missing score from "
                                    "the judge's next-token choice after 'Score:' (for small judges)")
    precompute_ref_log_probs: bool = Field(False, description="not available online: the pairs are sampled "
                                           "during training")

    @model_validator(mode="after")
    def _check_online(self) -> OnlineDPOConfig:
        if self.rollout_dtype is not None and self.rollout_backend != "hf":
            raise ValueError("rollout_dtype applies to rollout_backend=hf (vLLM sets its own dtype); unset one of them")
        if self.precompute_ref_log_probs:
            raise ValueError("precompute_ref_log_probs=true does not apply to online-dpo: its pairs are sampled "
                             "during training, so reference log-probs are computed on the fly")
        if self.max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be smaller than max_length "
                             f"({self.max_length}): prompt and completion share max_length")
        return self


def build_reward_set(cfg: OnlineDPOConfig) -> RewardSet:
    """The :class:`~alignkit.rewards.RewardSet` of ``reward=``, with the ``judge_*`` keys applied to
    ``judge:`` sources (a spec's own query string wins)."""
    from alignkit.scoring import reward_from_spec

    sources = []
    for spec in parse_reward_spec(cfg.reward):
        if spec.startswith("judge:"):
            sources.append(reward_from_spec(spec, judge_samples=cfg.judge_samples, temperature=cfg.judge_temperature,
                                            max_new_tokens=cfg.judge_max_new_tokens, seed=cfg.seed,
                                            judge_model=cfg.judge_model, timeout=cfg.judge_timeout,
                                            unparsable=cfg.judge_unparsable, force_score=cfg.judge_force_score))
        else:
            sources.append(load_reward_source(spec))
    return RewardSet(sources, cfg.reward_weights)


def select_pairs(rewards: torch.Tensor, group_size: int,
                 completion_ids: list[list[int]] | None = None) -> tuple[list[int], list[int]]:
    """Row indices (chosen, rejected) of the (best, worst) completion of each group of ``group_size``
    consecutive rows; groups whose scores are all equal, or whose best and worst are the same tokens,
    give no pair."""
    chosen, rejected = [], []
    g = rewards.detach().float().cpu().view(-1, group_size)
    for i, row in enumerate(g.tolist()):
        base = i * group_size
        same = None if completion_ids is None else \
            (lambda c, r, b=base: list(completion_ids[b + c]) == list(completion_ids[b + r]))
        pick = pick_pair(row, same=same)
        if not isinstance(pick, str):
            chosen.append(base + pick[0])
            rejected.append(base + pick[1])
    return chosen, rejected


class OnlineDPO(PromptMethod):
    name = "online-dpo"
    config_cls = OnlineDPOConfig

    def __init__(self, config: OnlineDPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if config.reward is None:
            raise ConfigError("online-dpo needs a reward or judge to label its samples: reward=judge:self (the "
                              "policy judges itself), reward=judge:PATH_OR_NAME, reward=judge:http://HOST:PORT/v1, "
                              "reward=rm:PATH or reward=FILE.py:FUNC (shipped: reward=format.py:word_limit)")
        self.rewards = build_reward_set(config)
        self.judges = [s for s in self.rewards.sources if hasattr(s, "judge") and hasattr(s, "last")]
        self.accelerator: Any = None
        self.backend: Any = None
        self.reference: Reference | None = None
        self.completion_log: CompletionLog | None = None
        self._first_step: int | None = None

    @property
    def reference_free(self) -> bool:
        from alignkit.losses import REFERENCE_FREE

        return self.config.loss in REFERENCE_FREE

    # -- data ---------------------------------------------------------------------------------
    def count_units(self, batch: dict[str, Any]) -> int:
        if "completion_mask" not in batch or batch.get("loss_weight", 1.0) == 0.0:
            return 0  # a prompt batch (evaluation) or a placeholder that trains nothing
        return int(batch["input_ids"].shape[0]) // 2

    # -- set-up -------------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, accelerator: Any) -> None:
        from alignkit.scoring import bind_policy

        cfg = self.config
        self.accelerator = accelerator
        self.backend = self.rollout_backend(model, accelerator)
        if bind_policy(self.rewards, model, self.tokenizer):
            announce("online-dpo: judge:self - the policy judges its own samples", accelerator)
        if self.reference_free:
            announce(f"online-dpo loss={cfg.loss}: reference free, no reference model is loaded or run", accelerator)
        else:
            self.reference = build_reference(model, accelerator, precompute=False)
            announce(f"online-dpo loss={cfg.loss}: reference = {self.reference.how}", accelerator)
        self.completion_log = CompletionLog(cfg.output_dir, cfg.log_completions_steps,
                                            enabled=accelerator.is_main_process)

    def _autocast(self):
        return self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext()

    def _sample_and_score(self, model: torch.nn.Module, batch: dict[str, Any], seed: int) -> dict[str, Any]:
        cfg = self.config
        with self._autocast():
            ro = self.backend.generate(model, batch["prompt_ids"], num_generations=cfg.num_generations, seed=seed)
        total, per, prompts, texts = score_rollout(self.rewards, self.tokenizer, batch, ro)
        truncated = ro.truncated.detach().cpu()
        if cfg.missing_eos_penalty:
            total = total - cfg.missing_eos_penalty * truncated.float()
        from alignkit.judges import is_forced

        samples = [(v, raw) for j in self.judges for s in j.last for v, raw in zip(s.samples, s.raw)]
        forced = sum(is_forced(raw) for _, raw in samples)
        parsed = sum(v is not None for v, _ in samples) - forced
        return {"rollout": ro, "rewards": total, "per": per, "prompts": prompts, "texts": texts,
                "truncated": truncated, "parsed": parsed, "forced": forced, "judged": len(samples)}

    # -- rollout ------------------------------------------------------------------------------
    def prepare_step(self, model: torch.nn.Module, batches: list[dict[str, Any]],
                     step: int) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
        cfg, acc = self.config, self.accelerator
        if self._first_step is None:
            self._first_step = step
            if self.completion_log is not None:
                self.completion_log.start(step)
        G = cfg.num_generations
        rank = acc.process_index if acc is not None else 0
        device = acc.device if acc is not None else next(unwrap(model).parameters()).device

        report = self.sync_backend(model, batches, step)
        parts = [self._sample_and_score(model, b, rollout_seed(cfg.seed, step, rank, k)) for k, b in enumerate(batches)]
        micro = []
        n_pairs = n_prompts = 0
        margin_sum = 0.0
        for p in parts:
            ro, rewards = p["rollout"], p["rewards"]
            chosen, rejected = select_pairs(rewards, G, ro.completion_ids)
            n_prompts += rewards.numel() // G
            n_pairs += len(chosen)
            margin_sum += float((rewards[chosen] - rewards[rejected]).sum()) if chosen else 0.0
            weight = 1.0
            if not chosen:  # no pair in this micro-batch: a placeholder that trains nothing
                chosen, rejected, weight = [0], [1], 0.0
            tensors = rollout_batch(ro)
            rows = torch.tensor(chosen + rejected, device=tensors["input_ids"].device)
            t: dict[str, Any] = {k: v.index_select(0, rows) for k, v in tensors.items()}
            t = trim_padding(t)
            t["loss_weight"] = weight
            if weight == 0.0:
                t.pop("rollout_logps", None)  # the placeholder pair trains nothing: no gap from it either
            micro.append(mark_rollout(t, report.fresh))

        if self.reference is not None:
            with torch.no_grad():
                for t in micro:
                    ref = reference_token_logps(self.reference, t, 1.0, **self._pair_groups()).sum(-1).float()
                    B = ref.shape[0] // 2
                    t["ref_chosen_logps"], t["ref_rejected_logps"] = ref[:B].to(device), ref[B:].to(device)

        rewards = torch.cat([p["rewards"] for p in parts])
        N = float(rewards.numel())
        lengths = torch.cat([p["rollout"].completion_mask.sum(1).float().cpu() for p in parts])
        truncated = torch.cat([p["truncated"] for p in parts]).float()
        metrics: dict[str, tuple[float, float]] = {
            "reward": (float(rewards.sum()), N),
            "reward_std": (float(rewards.std()) if rewards.numel() > 1 else 0.0, 1.0),
            "reward_margin": (margin_sum, float(n_pairs)),
            "pairs_kept": (float(n_pairs), float(n_prompts)),
            "completion_length": (float(lengths.sum()), N),
            "completions/clipped_ratio": (float(truncated.sum()), N),
            **{k: (float(v), 1.0) for k, v in report.metrics.items()},
        }
        for name in self.rewards.names:
            metrics[f"rewards/{name}"] = (float(torch.cat([p["per"][name] for p in parts]).sum()), N)
        if self.judges:
            judged = float(sum(p["judged"] for p in parts))
            metrics["judge/parse_rate"] = (float(sum(p["parsed"] for p in parts)), judged)
            if self.config.judge_force_score:
                metrics["judge/forced_rate"] = (float(sum(p["forced"] for p in parts)), judged)
        if self.completion_log is not None and self.completion_log.due(step + 1):
            per_all = {n: torch.cat([p["per"][n] for p in parts]).tolist() for n in self.rewards.names}
            self.completion_log.write(step + 1, [q for p in parts for q in p["prompts"]],
                                      [x for p in parts for x in p["texts"]], rewards.tolist(), per_all)
        return micro, metrics

    # -- loss ---------------------------------------------------------------------------------
    def _pair_groups(self) -> dict[str, Any]:
        """Keyword arguments of :func:`completion_token_logps` for a pair batch (chosen rows, then
        rejected rows of the same prompts): share each prompt's forward unless ``share_prompt=false``."""
        return {"group_size": 2, "tiled": True} if self.config.share_prompt else {}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> StepOutput:
        if "completion_mask" not in batch:
            return self._evaluate_prompts(model, batch)
        cfg = self.config
        mask = batch["completion_mask"]
        token_logps = completion_token_logps(model, batch, 1.0, **self._pair_groups())
        guard_metrics: dict[str, tuple[float, float]] = {}
        if "rollout_logps" in batch:
            # the server reports log-probs after temperature: compare with the policy's at that temperature
            scaled = token_logps if cfg.temperature == 1.0 else completion_token_logps(
                model, batch, cfg.temperature, **self._pair_groups()).detach()
            _, guard_metrics = self.guard.observe(batch, scaled.detach(), mask, step)
        logps, lengths = (token_logps * mask).sum(-1), mask.sum(-1)
        B = logps.shape[0] // 2
        chosen, rejected = logps[:B], logps[B:]
        c_len, r_len = lengths[:B], lengths[B:]
        weight = float(batch.get("loss_weight", 1.0))

        ref_c = ref_r = None
        if not self.reference_free:
            ref_c = batch["ref_chosen_logps"].to(chosen.dtype)
            ref_r = batch["ref_rejected_logps"].to(chosen.dtype)
        losses, metrics = dpo_family_loss(cfg, chosen, rejected, ref_c, ref_r, c_len, r_len, weight)
        return StepOutput(loss_sum=losses.sum() * weight, metrics={**metrics, **guard_metrics})

    def _evaluate_prompts(self, model: torch.nn.Module, batch: dict[str, Any]) -> StepOutput:
        """Mean scores of sampled completions for held-out prompts (the engine's evaluation)."""
        cfg = self.config
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        first_row = int(batch["rows"][0] or 0) if batch.get("rows") else 0
        p = self._sample_and_score(model, batch, rollout_seed(cfg.seed, -1 - first_row, rank, 0))
        total = p["rewards"]
        N = float(total.numel())
        chosen, _ = select_pairs(total, cfg.num_generations, p["rollout"].completion_ids)
        metrics = {"reward": (float(total.sum()), N),
                   "pairs_kept": (float(len(chosen)), N / cfg.num_generations),
                   "completion_length": (float(p["rollout"].completion_mask.sum()), N)}
        for name, values in p["per"].items():
            metrics[f"rewards/{name}"] = (float(values.sum()), N)
        return StepOutput(loss_sum=torch.zeros((), device=p["rollout"].sequences.device), metrics=metrics)

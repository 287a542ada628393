"""``alignkit sppo``: Self-Play Preference Optimization (Wu et al. 2024, arXiv:2405.00675), online.

One round (a block of ``num_iterations`` optimizer steps on one rollout, as in GRPO):

1. **Self-play samples**: the current policy pi_t samples K = ``num_generations`` answers per prompt (GRPO's
   rollout stage, :mod:`alignkit.methods.online`; seeded per step, so a resumed run samples the same).
2. **Win probabilities**: the ``reward=`` sources score every answer (``math:answer`` - the verifier -,
   ``prm:PATH``, ``rm:PATH``, ``judge:MODEL``, functions) and each answer's probability of beating
   pi_t is estimated against the other K-1 answers under Bradley-Terry:
   P_i = mean_{j != i} sigma(preference_scale * (r_i - r_j))  (:func:`alignkit.losses.bt_win_probabilities`).
   Or, with ``judge=`` (a pairwise judge spec instead of ``reward=``), P_i is answer i's win rate in the
   K-1 comparisons against the others (a win 1, a tie 1/2: :func:`win_rates`), as SPPO does with PairRM.
3. **Square loss** (:func:`alignkit.losses.sppo_loss`), per answer, with summed completion log-probs::

       (log pi_theta(y|x) - log pi_t(y|x) - eta * (P(y > pi_t | x) - 1/2))^2

   so the policy moves towards pi_{t+1}(y|x) ∝ pi_t(y|x) exp(eta P(y > pi_t|x)). log pi_t is recorded at
   sampling time (with ``num_iterations`` = 1 the loss is taken at theta = theta_t, where its gradient is
   -2 eta (P - 1/2) grad log pi: a REINFORCE step with the centred win probability as advantage; with
   more iterations per rollout the regression towards the target log-ratio is carried out). A loss unit
   is an answer.

The paper runs this as a few large iterations (sample a whole prompt set, then train epochs on it); here
a round is one rollout, which is the same update with smaller rounds. No reference model: the anchor is
pi_t itself. Metrics: GRPO's rollout metrics (``reward``, ``reward_std``, ``rewards/NAME``,
``frac_reward_zero_std``, ``completion_length``, ``completions/clipped_ratio``), ``win_prob_std``,
``log_ratio`` (mean log pi_theta - log pi_t), ``entropy``.

SPO (Swamy et al. 2024, "A Minimaximalist Approach to Reinforcement Learning from Human Feedback",
arXiv:2401.04056) plays the same self-play game but uses an answer's win rate against the policy's own
samples as the *reward* of an ordinary RL update (PPO/SAC in the paper). With ``num_iterations=1`` this
command's update is such a step (REINFORCE with advantage 2 eta (P - 1/2)); with more iterations per
rollout it is SPPO's regression. There is no separate ``spo`` command.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from alignkit.config import ConfigError, TrainConfig
from alignkit.engine.method import StepOutput
from alignkit.losses import bt_win_probabilities, sppo_loss
from alignkit.methods.grpo import GRPO
from alignkit.methods.online import (
    PromptMethod,
    ServerRolloutKeys,
    completion_token_logps,
)
from alignkit.methods.reference import announce
from alignkit.methods.rollout_store import CompletionLog, RolloutStore
from alignkit.rewards import RewardSet, completion_text


class SPPOConfig(TrainConfig, ServerRolloutKeys):
    """SPPO: self-play; K answers per prompt, win probabilities from reward= by Bradley-Terry, square loss towards log pi/pi_t = eta (P - 1/2)."""

    batch_size: int = Field(2, ge=1, description="prompts per device per micro-batch; each is sampled "
                            "num_generations times")
    reward: str | list[str] | None = Field(None, description="scores the answers: math:answer, prm:PATH, rm:PATH, "
                                           "judge:MODEL, FILE.py:FUNC, or a list")
    reward_weights: list[float] | None = Field(None, description="one weight per reward source (default all 1)")
    judge: str | None = Field(None, description="instead of reward=: a pairwise judge spec (judge:self, judge:PATH, "
                              "judge:http://..., ?method=critique|debate; rm:PATH / FILE.py:FUNC compare scores); "
                              "P = the answer's win rate against the other K-1")
    num_generations: int = Field(4, ge=2, description="answers sampled per prompt (K), played against each other")
    eta: float = Field(1.0, gt=0, description="step size of the multiplicative-weights update: target "
                       "log-ratio eta * (P - 1/2)")
    preference_scale: float = Field(1.0, gt=0, description="P(y_i > y_j) = sigmoid(preference_scale * (r_i - r_j))")
    max_new_tokens: int = Field(64, ge=1, description="longest completion, in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (also applied to the log-probs)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    num_iterations: int = Field(1, ge=1, description="optimizer steps per rollout")
    dynamic_sampling: bool = Field(False, description="drop prompts whose answers all score the same")
    log_completions_steps: int = Field(10, ge=0, description="write sample completions every N steps; 0: never")
    max_prompt_length: int | None = Field(None, ge=1, description="keep the last N prompt tokens "
                                          "(default max_length - max_new_tokens)")
    rollout_backend: Literal["hf", "vllm", "vllm-server"] = Field(
        "hf", description="generation engine: hf, vllm (in-process, needs vllm + a GPU) or vllm-server (an "
        "OpenAI-compatible vLLM server, started or attached; see grpo --help and the README's Engines section)")
    share_prompt: bool = Field(True, description="run each prompt once per group in the training forward")
    rollout_dtype: Literal["float32", "bfloat16"] | None = Field(
        None, description="hf backend: sample from a copy of the policy in this dtype (see grpo --help)")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="GPU memory share of vLLM")

    @model_validator(mode="after")
    def _check(self) -> SPPOConfig:
        if self.reward is not None and self.judge is not None:
            raise ValueError("give reward= (win probabilities by Bradley-Terry) or judge= (a pairwise judge), not both")
        if self.rollout_is_cap is not None:
            raise ValueError("rollout_is_cap: sppo's loss is per sequence (a regression of the log-ratio), so "
                             "per-token importance weights do not apply; unset it")
        if self.max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be smaller than max_length "
                             f"({self.max_length}): prompt and completion share max_length")
        return self


def win_rates(verdicts: list[str], group_size: int) -> list[float]:
    """Each answer's win rate from pairwise verdicts, ``result[i]``: (wins + ties / 2) / (K - 1).

    ``verdicts`` are ``"A"`` / ``"B"`` / ``"tie"`` for the pairs of :func:`group_pairs`, in that order."""
    per_group = group_size * (group_size - 1) // 2
    if len(verdicts) % per_group:
        raise ValueError(f"{len(verdicts)} verdicts do not split into groups of {per_group} pairs")
    n_answers = len(verdicts) // per_group * group_size
    pairs = group_pairs(n_answers, group_size)
    wins = [0.0] * n_answers
    for (i, j), v in zip(pairs, verdicts):
        if v == "A":
            wins[i] += 1.0
        elif v == "B":
            wins[j] += 1.0
        else:
            wins[i] += 0.5
            wins[j] += 0.5
    return [w / (group_size - 1) for w in wins]


def group_pairs(n_answers: int, group_size: int) -> list[tuple[int, int]]:
    """Every pair (i, j), i < j, of answers to the same prompt (groups of ``group_size`` consecutive answers)."""
    return [(g + a, g + b) for g in range(0, n_answers, group_size)
            for a in range(group_size) for b in range(a + 1, group_size)]


class PairwiseWinRate:
    """A reward source whose score is each answer's win rate against the other answers to its prompt,
    judged pairwise (each pair once; the LLM judges ask both orders themselves)."""

    name = "win_rate"

    def __init__(self, judge: Any, group_size: int) -> None:
        self.judge, self.group_size = judge, group_size

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        texts = [completion_text(c) for c in completions]
        pairs = group_pairs(len(texts), self.group_size)
        verdicts = self.judge.compare([prompts[i] for i, _ in pairs], [texts[i] for i, _ in pairs],
                                      [texts[j] for _, j in pairs])
        return win_rates(list(verdicts), self.group_size)


class SPPO(GRPO):
    name = "sppo"
    config_cls = SPPOConfig

    def __init__(self, config: SPPOConfig, tokenizer: Any) -> None:
        if config.judge is None:
            if config.reward is None:
                raise ConfigError("sppo needs a preference signal: reward=math:answer (the verifier), reward=prm:PATH, "
                                  "reward=rm:PATH, reward=FILE.py:FUNC, or judge=SPEC (a pairwise judge)")
            super().__init__(config, tokenizer)
            return
        from alignkit.scoring import load_pairwise_judge

        PromptMethod.__init__(self, config, tokenizer)
        self.rewards = RewardSet([PairwiseWinRate(load_pairwise_judge(config.judge, seed=config.seed),
                                                  config.num_generations)])
        self.accelerator = self.backend = self.reference = self.completion_log = self._first_step = None
        self.store = RolloutStore(config.output_dir, config.num_iterations)

    def count_units(self, batch: dict[str, Any]) -> int:
        if "completion_mask" not in batch or batch.get("loss_weight", 1.0) == 0.0:
            return 0
        return int(batch["completion_mask"].shape[0])

    def setup(self, model: torch.nn.Module, accelerator: Any) -> None:
        from alignkit.scoring import bind_policy

        cfg = self.config
        self.accelerator = accelerator
        self.backend = self.rollout_backend(model, accelerator)
        if bind_policy(self.rewards, model, self.tokenizer):
            announce("sppo: judge:self - the policy judges its own samples", accelerator)
        self.reference = None  # the anchor is pi_t, recorded at sampling time
        self.completion_log = CompletionLog(cfg.output_dir, cfg.log_completions_steps,
                                            enabled=accelerator.is_main_process)
        self.store = RolloutStore(cfg.output_dir, cfg.num_iterations, rank=accelerator.process_index,
                                  device=accelerator.device)

    def _advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """The centred win probabilities P_i - 1/2 (stored where GRPO keeps its advantages)."""
        cfg = self.config
        if cfg.judge is not None:  # the rewards are the win rates already
            return rewards.float() - 0.5
        return bt_win_probabilities(rewards, cfg.num_generations, cfg.preference_scale) - 0.5

    def _rollout_metrics(self, parts: list[dict], rewards: torch.Tensor) -> dict[str, tuple[float, float]]:
        metrics = super()._rollout_metrics(parts, rewards)
        win = self._advantages(rewards)
        metrics["win_prob_std"] = (float(win.std()) if win.numel() > 1 else 0.0, 1.0)
        return metrics

    def loss(self, model: torch.nn.Module, batch: dict[str, Any], step: int) -> StepOutput:
        if "completion_mask" not in batch:
            return self._evaluate_prompts(model, batch)
        cfg = self.config
        token_logps, entropy = completion_token_logps(model, batch, cfg.temperature, with_entropy=True,
                                                      group_size=self._group_size)
        mask = batch["completion_mask"].to(token_logps.dtype)
        old = batch.get("old_logps")
        old = token_logps.detach() if old is None else old.to(token_logps.dtype)
        _, guard_metrics = self.guard.observe(batch, old, batch["completion_mask"], step)  # the rollout's gap
        logps, old_logps = (token_logps * mask).sum(-1), (old * mask).sum(-1)
        win = batch["advantages"].to(logps.dtype) + 0.5
        losses = sppo_loss(logps, old_logps, win, cfg.eta)
        n = float(logps.shape[0])
        tok = float(mask.sum())
        return StepOutput(loss_sum=losses.sum() * float(batch.get("loss_weight", 1.0)), metrics={
            "log_ratio": (float((logps - old_logps).detach().sum()), n),
            "entropy": (float((entropy * mask).sum()), tok), **guard_metrics})

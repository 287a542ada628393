"""Pure loss functions for alignment (no model, no config): tensors in, tensors out.

Contract (README "Preference optimisation")::

    from alignkit.losses import preference_loss, kto_loss, grpo_loss, group_advantages, gae

- :mod:`.preference` DPO family (sigmoid, hinge, ipo, robust), SimPO, ORPO; implicit rewards; RPO's NLL term
- :mod:`.kto`        KTO
- :mod:`.policy`     advantages (GRPO, RLOO, REINFORCE++, GAE), GRPO/DAPO/Dr.GRPO loss, PPO losses, KL, masked stats
- :mod:`.reward`     Bradley-Terry reward-model loss; soft weak labels with Burns et al.'s confidence term
- :mod:`.distill`    knowledge distillation: forward / reverse KL to a teacher's token distribution
- :mod:`.safety`     Safe RLHF: cost-model loss, Lagrangian advantage, lambda updates (gradient, PID)
- :mod:`.stepwise`   process reward model step loss; SPPO square loss and win probabilities
- :mod:`.rollout`    rollout/training log-prob gap; truncated importance-sampling weights
"""

from alignkit.losses.distill import distillation_kl
from alignkit.losses.kto import kto_kl_estimate, kto_loss, kto_rewards
from alignkit.losses.policy import (
    GRPO_LOSS_TYPES,
    KL_KINDS,
    adaptive_kl_update,
    entropy_from_logits,
    gae,
    group_advantages,
    grpo_loss,
    grpo_loss_with_stats,
    kl_penalty,
    kl_shaped_rewards,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    reinforce_pp_advantages,
    rloo_advantages,
)
from alignkit.losses.preference import (
    NEEDS_LENGTHS,
    PREFERENCE_LOSSES,
    REFERENCE_FREE,
    log1mexp,
    nll_term,
    preference_loss,
    preference_rewards,
)
from alignkit.losses.reward import bradley_terry_loss, reward_centering_term, weak_to_strong_loss
from alignkit.losses.rollout import logprob_gap, truncated_is_weights
from alignkit.losses.safety import (
    LambdaState,
    cost_model_loss,
    cost_sign_loss,
    lagrangian_advantages,
    lambda_update,
    pid_lambda_update,
)
from alignkit.losses.stepwise import bt_win_probabilities, sppo_loss, step_bce_loss

__all__ = [
    "logprob_gap",
    "truncated_is_weights",
    "LambdaState",
    "adaptive_kl_update",
    "cost_model_loss",
    "cost_sign_loss",
    "distillation_kl",
    "lagrangian_advantages",
    "lambda_update",
    "pid_lambda_update",
    "GRPO_LOSS_TYPES",
    "KL_KINDS",
    "NEEDS_LENGTHS",
    "PREFERENCE_LOSSES",
    "REFERENCE_FREE",
    "bradley_terry_loss",
    "bt_win_probabilities",
    "entropy_from_logits",
    "gae",
    "group_advantages",
    "grpo_loss",
    "grpo_loss_with_stats",
    "kl_penalty",
    "kl_shaped_rewards",
    "kto_kl_estimate",
    "kto_loss",
    "kto_rewards",
    "log1mexp",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "nll_term",
    "ppo_policy_loss",
    "ppo_value_loss",
    "preference_loss",
    "preference_rewards",
    "reinforce_pp_advantages",
    "reward_centering_term",
    "rloo_advantages",
    "weak_to_strong_loss",
    "sppo_loss",
    "step_bce_loss",
]

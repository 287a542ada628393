"""Every loss against values worked out here with plain Python math on 2-3 element examples."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses import (
    PREFERENCE_LOSSES,
    REFERENCE_FREE,
    bradley_terry_loss,
    entropy_from_logits,
    gae,
    group_advantages,
    grpo_loss,
    grpo_loss_with_stats,
    kl_penalty,
    kto_loss,
    log1mexp,
    masked_mean,
    masked_whiten,
    nll_term,
    ppo_policy_loss,
    ppo_value_loss,
    preference_loss,
    preference_rewards,
    reinforce_pp_advantages,
    rloo_advantages,
)

D = torch.float64


def t(values, dtype=D, requires_grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=requires_grad)


def log_sigmoid(x: float) -> float:
    return -math.log(1.0 + math.exp(-x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def close(actual: torch.Tensor, expected, tol: float = 1e-9) -> None:
    expected_t = torch.as_tensor(expected, dtype=actual.dtype)
    assert actual.shape == expected_t.shape, (actual.shape, expected_t.shape)
    assert torch.allclose(actual, expected_t, atol=tol, rtol=0), (actual.tolist(), expected)


# A two-pair batch used by the preference tests.
C, R = [-10.0, -8.0], [-12.0, -7.2]
C_REF, R_REF = [-11.0, -8.5], [-11.5, -7.5]
LC, LR = [4, 2], [5, 3]
H = [(C[i] - C_REF[i]) - (R[i] - R_REF[i]) for i in range(2)]  # [1.5, 0.2]


def pref(name, **kw):
    return preference_loss(name, t(C), t(R), t(C_REF), t(R_REF), t(LC), t(LR), **kw)


# ---------------------------------------------------------------------------------------------
# preference losses
# ---------------------------------------------------------------------------------------------
def test_constants():
    assert PREFERENCE_LOSSES == ("sigmoid", "hinge", "ipo", "robust", "simpo", "orpo")
    assert REFERENCE_FREE == ("simpo", "orpo")


def test_sigmoid_dpo():
    assert H == pytest.approx([1.5, 0.2])
    close(pref("sigmoid", beta=0.1), [-log_sigmoid(0.15), -log_sigmoid(0.02)])


def test_sigmoid_label_smoothing():
    eps, beta = 0.2, 0.5
    expected = [-(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h) for h in H]
    close(pref("sigmoid", beta=beta, label_smoothing=eps), expected)


def test_first_step_dpo_is_ln2():
    c, r = t([-3.0, -40.0, -7.5]), t([-5.0, -2.0, -7.5])
    loss = preference_loss("sigmoid", c, r, c.clone(), r.clone(), beta=0.1)
    close(loss, [math.log(2.0)] * 3)


def test_hinge():
    # beta = 1: 1 - 1.5 < 0 -> 0; 1 - 0.2 = 0.8
    close(pref("hinge", beta=1.0), [0.0, 0.8])


def test_ipo_uses_per_token_averaged_log_ratios():
    # h_bar = (c - c_ref)/|c| - (r - r_ref)/|r|
    h_bar0 = (-10.0 + 11.0) / 4 - (-12.0 + 11.5) / 5  # 0.25 + 0.1 = 0.35
    h_bar1 = (-8.0 + 8.5) / 2 - (-7.2 + 7.5) / 3  # 0.25 - 0.1 = 0.15
    assert h_bar0 == pytest.approx(0.35) and h_bar1 == pytest.approx(0.15)
    beta = 0.5  # target 1 / (2 beta) = 1
    close(pref("ipo", beta=beta), [(h_bar0 - 1.0) ** 2, (h_bar1 - 1.0) ** 2])


def test_robust():
    eps, beta = 0.1, 0.3
    expected = [
        ((1 - eps) * -log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)) / (1 - 2 * eps) for h in H
    ]
    close(pref("robust", beta=beta, label_smoothing=eps), expected)
    # without noise it is plain DPO
    close(pref("robust", beta=beta), pref("sigmoid", beta=beta).tolist())


def test_simpo_with_gamma_and_no_reference():
    beta, gamma = 2.0, 0.5
    m0 = -10.0 / 4 - -12.0 / 5  # -2.5 + 2.4 = -0.1
    m1 = -8.0 / 2 - -7.2 / 3  # -4 + 2.4 = -1.6
    expected = [-log_sigmoid(beta * m0 - gamma), -log_sigmoid(beta * m1 - gamma)]
    close(
        preference_loss(
            "simpo", t(C), t(R), chosen_lengths=t(LC), rejected_lengths=t(LR), beta=beta, gamma=gamma
        ),
        expected,
    )
    # references are ignored
    close(pref("simpo", beta=beta, gamma=gamma), expected)


def test_orpo():
    lam = 0.1
    expected = []
    for c, r, lc, lr in zip(C, R, LC, LR):
        cb, rb = c / lc, r / lr
        log_odds = (cb - rb) - (math.log(1 - math.exp(cb)) - math.log(1 - math.exp(rb)))
        expected.append(-cb - lam * log_sigmoid(log_odds))
    close(
        preference_loss("orpo", t(C), t(R), chosen_lengths=t(LC), rejected_lengths=t(LR), lam=lam), expected
    )


def test_orpo_large_probabilities_are_finite_and_accurate():
    # average log-probs close to 0 (a very confident policy) and very negative ones
    c = t([-1e-4, -30.0, 0.0], requires_grad=True)
    r = t([-0.5, -1e-3, -60.0], requires_grad=True)
    ones = t([1.0, 1.0, 1.0])
    loss = preference_loss("orpo", c, r, chosen_lengths=ones, rejected_lengths=ones, lam=0.2)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(c.grad).all() and torch.isfinite(r.grad).all()
    cb, rb = -1e-4, -0.5
    log_odds = (cb - rb) - (math.log(-math.expm1(cb)) - math.log1p(-math.exp(rb)))
    assert loss[0].item() == pytest.approx(-cb - 0.2 * log_sigmoid(log_odds), rel=1e-9)


def test_log1mexp_matches_math():
    xs = [-1e-6, -0.1, -math.log(2.0), -1.0, -20.0]
    close(log1mexp(t(xs)), [math.log(-math.expm1(x)) for x in xs], tol=1e-12)


def test_lengths_are_clamped_to_one():
    loss = preference_loss(
        "simpo", t([-2.0]), t([-3.0]), chosen_lengths=t([0.0]), rejected_lengths=t([1.0]), beta=1.0
    )
    close(loss, [-log_sigmoid(1.0)])


@pytest.mark.parametrize("name", ["sigmoid", "hinge", "ipo", "robust"])
def test_reference_losses_need_references(name):
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_loss(name, t(C), t(R), chosen_lengths=t(LC), rejected_lengths=t(LR))


@pytest.mark.parametrize("name", ["ipo", "simpo", "orpo"])
def test_averaging_losses_need_lengths(name):
    with pytest.raises(ValueError, match="lengths"):
        preference_loss(name, t(C), t(R), t(C_REF), t(R_REF))


def test_preference_errors():
    with pytest.raises(ValueError, match="unknown preference loss 'dpo'.*sigmoid"):
        preference_loss("dpo", t(C), t(R), t(C_REF), t(R_REF))
    with pytest.raises(ValueError, match="label_smoothing"):
        pref("robust", label_smoothing=0.5)
    with pytest.raises(ValueError, match="same shape"):
        preference_loss("sigmoid", t(C), t([1.0]), t(C_REF), t(R_REF))


def test_preference_rewards_and_nll_term():
    c = t(C, requires_grad=True)
    chosen, rejected = preference_rewards(c, t(R), t(C_REF), t(R_REF), beta=0.1)
    close(chosen, [0.1 * 1.0, 0.1 * 0.5])
    close(rejected, [0.1 * -0.5, 0.1 * 0.3])
    assert not chosen.requires_grad and not rejected.requires_grad
    close(nll_term(t(C), t(LC)), [10.0 / 4, 8.0 / 2])


def test_dpo_sgd_step_raises_the_margin():
    torch.manual_seed(0)
    theta = torch.zeros(6, dtype=D, requires_grad=True)  # a unigram "policy" over 6 tokens
    ref = torch.log_softmax(torch.zeros(6, dtype=D), -1)
    chosen_tokens, rejected_tokens = torch.tensor([1, 2, 2]), torch.tensor([4, 5])

    def logps(params):
        lp = torch.log_softmax(params, -1)
        return lp[chosen_tokens].sum().view(1), lp[rejected_tokens].sum().view(1)

    c, r = logps(theta)
    margin_before = (c - r).item()
    loss = preference_loss(
        "sigmoid", c, r, ref[chosen_tokens].sum().view(1), ref[rejected_tokens].sum().view(1)
    )
    assert loss.item() == pytest.approx(math.log(2.0))
    loss.sum().backward()
    with torch.no_grad():
        theta -= 1.0 * theta.grad
    c, r = logps(theta)
    assert (c - r).item() > margin_before + 1e-3


# ---------------------------------------------------------------------------------------------
# KTO
# ---------------------------------------------------------------------------------------------
def test_kto_desirable_and_undesirable():
    logps, ref = [-5.0, -6.0, -7.0], [-5.5, -5.0, -7.0]
    labels = torch.tensor([True, False, True])
    kl, kl_ref = [-4.0, -6.0], [-5.0, -5.5]
    z = ((-4.0 + 5.0) + (-6.0 + 5.5)) / 2  # 0.25
    beta, wd, wu = 0.5, 1.5, 0.7
    d = [logps[i] - ref[i] for i in range(3)]  # [0.5, -1.0, 0.0]
    expected = [
        wd * (1 - sigmoid(beta * (d[0] - z))),
        wu * (1 - sigmoid(beta * (z - d[1]))),
        wd * (1 - sigmoid(beta * (d[2] - z))),
    ]
    loss = kto_loss(
        t(logps), t(ref), labels, t(kl), t(kl_ref), beta=beta, desirable_weight=wd, undesirable_weight=wu
    )
    close(loss, expected)


def test_kto_reference_point_is_clamped_at_zero_and_detached():
    logps = t([-5.0, -6.0], requires_grad=True)
    ref = t([-5.5, -5.0])
    kl_logps = t([-7.0, -6.0], requires_grad=True)  # mean log-ratio < 0 -> z = 0
    kl_ref = t([-5.0, -5.5])
    labels = torch.tensor([True, False])
    loss = kto_loss(logps, ref, labels, kl_logps, kl_ref, beta=1.0)
    close(loss.detach(), [1 - sigmoid(0.5 - 0.0), 1 - sigmoid(0.0 - -1.0)])
    loss.sum().backward()
    assert kl_logps.grad is None  # no gradient through z
    assert logps.grad is not None and (logps.grad != 0).all()


# ---------------------------------------------------------------------------------------------
# advantages
# ---------------------------------------------------------------------------------------------
def test_group_advantages_two_groups():
    rewards = t([1.0, 2.0, 3.0, 0.0, 0.0, 6.0])
    # group 1: mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1
    # group 2: mean 2, unbiased std sqrt((4 + 4 + 16) / 2) = sqrt(12)
    s2 = math.sqrt(12.0)
    expected = [-1 / (1 + 1e-4), 0.0, 1 / (1 + 1e-4), -2 / (s2 + 1e-4), -2 / (s2 + 1e-4), 4 / (s2 + 1e-4)]
    close(group_advantages(rewards, group_size=3), expected)
    close(group_advantages(rewards, group_size=3, scale=False), [-1.0, 0.0, 1.0, -2.0, -2.0, 4.0])


def test_group_advantages_constant_group_and_errors():
    close(
        group_advantages(t([0.5, 0.5, 1.0, 0.0]), group_size=2),
        [0.0, 0.0, 0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)],
    )
    close(group_advantages(t([3.0, 1.0]), group_size=1), [0.0, 0.0])
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(t([1.0, 2.0, 3.0]), group_size=2)


def test_rloo_advantages():
    # r_i - mean of the other two
    close(
        rloo_advantages(t([1.0, 2.0, 3.0, 0.0, 0.0, 6.0]), group_size=3),
        [1 - 2.5, 2 - 2.0, 3 - 1.5, 0 - 3.0, 0 - 3.0, 6 - 0.0],
    )
    with pytest.raises(ValueError):
        rloo_advantages(t([1.0, 2.0]), group_size=1)


def test_reinforce_pp_advantages():
    r = [1.0, 2.0, 4.0, 5.0]
    mean = 3.0
    std = math.sqrt(((1 - 3) ** 2 + (2 - 3) ** 2 + (4 - 3) ** 2 + (5 - 3) ** 2) / 3)
    close(reinforce_pp_advantages(t(r)), [(x - mean) / (std + 1e-8) for x in r])
    # with a group baseline: x = r - group mean = [-0.5, 0.5, -0.5, 0.5], mean 0, unbiased std sqrt(1/3)
    s = math.sqrt(4 * 0.25 / 3)
    close(reinforce_pp_advantages(t(r), group_size=2), [-0.5 / (s + 1e-8), 0.5 / (s + 1e-8)] * 2)


def test_gae_single_sequence():
    gamma, lam = 0.9, 0.8
    rewards, values = [0.0, 0.0, 1.0], [0.5, 0.4, 0.3]
    a2 = 1.0 + gamma * 0.0 - 0.3  # 0.7
    a1 = (0.0 + gamma * 0.3 - 0.4) + gamma * lam * a2  # -0.13 + 0.504 = 0.374
    a0 = (0.0 + gamma * 0.4 - 0.5) + gamma * lam * a1  # -0.14 + 0.26928 = 0.12928
    assert [a0, a1, a2] == pytest.approx([0.12928, 0.374, 0.7])
    adv, ret = gae(t([rewards]), t([values]), torch.ones(1, 3), gamma=gamma, lam=lam)
    close(adv, [[a0, a1, a2]])
    close(ret, [[a0 + 0.5, a1 + 0.4, a2 + 0.3]])


def test_gae_masked_batch():
    rewards = t([[0.0, 1.0, 5.0], [0.0, 0.0, 2.0]])
    values = t([[0.2, 0.6, 9.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 0: last real token t=1 ends the episode; the padding's reward 5 and value 9 are not seen
    r0_a1 = 1.0 + 0.0 - 0.6  # 0.4
    r0_a0 = (0.0 + 0.6 - 0.2) + 0.95 * r0_a1  # 0.78
    # row 1: no padding
    r1_a2 = 2.0 - 1.0
    r1_a1 = (0.0 + 1.0 - 1.0) + 0.95 * r1_a2  # 0.95
    r1_a0 = (0.0 + 1.0 - 1.0) + 0.95 * r1_a1  # 0.9025
    close(adv, [[r0_a0, r0_a1, 0.0], [r1_a0, r1_a1, r1_a2]], tol=1e-12)
    close(ret, [[r0_a0 + 0.2, r0_a1 + 0.6, 9.0], [r1_a0 + 1.0, r1_a1 + 1.0, r1_a2 + 1.0]], tol=1e-12)


# ---------------------------------------------------------------------------------------------
# GRPO
# ---------------------------------------------------------------------------------------------
RATIOS = [[1.5, 0.7, 1.0], [0.9, 1.25, 0.5]]
LOGPS = [[-1.0, -2.0, -0.5], [-1.5, -0.3, -2.2]]
MASK = [[1, 1, 0], [1, 1, 1]]
ADV = [1.0, -2.0]


def grpo_inputs(requires_grad=False):
    logps = t(LOGPS, requires_grad=requires_grad)
    old = t([[LOGPS[i][j] - math.log(RATIOS[i][j]) for j in range(3)] for i in range(2)])
    return logps, old, t(ADV), torch.tensor(MASK)


def surrogate(rho, a, lo, hi):
    return -min(rho * a, min(max(rho, 1 - lo), 1 + hi) * a)


def per_token_losses(lo, hi, beta=0.0, ref=None):
    out = []
    for i in range(2):
        row = []
        for j in range(3):
            loss = surrogate(RATIOS[i][j], ADV[i], lo, hi)
            if beta:
                x = ref[i][j] - LOGPS[i][j]
                loss += beta * (math.exp(x) - x - 1)
            row.append(loss)
        out.append(row)
    return out


def aggregate(losses, loss_type):
    if loss_type == "grpo":
        means = [sum(losses[i][j] for j in range(3) if MASK[i][j]) / sum(MASK[i]) for i in range(2)]
        return sum(means) / 2
    total = sum(losses[i][j] for i in range(2) for j in range(3) if MASK[i][j])
    return total / 5 if loss_type == "dapo" else total / (2 * 3)


def test_grpo_per_token_values_by_hand():
    lt = per_token_losses(0.2, 0.28)
    # row 0 (A = 1): rho 1.5 clipped to 1.28; rho 0.7 -> min(0.7, 0.8) = 0.7 (unclipped)
    # row 1 (A = -2): rho 0.9 -> 1.8; rho 1.25 -> 2.5; rho 0.5 clipped to 0.8 -> 1.6
    assert lt[0][:2] == pytest.approx([-1.28, -0.7])
    assert lt[1] == pytest.approx([1.8, 2.5, 1.6])


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_grpo_loss_types_with_asymmetric_clipping(loss_type):
    logps, old, adv, mask = grpo_inputs()
    loss = grpo_loss(logps, old, adv, mask, eps_low=0.2, eps_high=0.28, loss_type=loss_type)
    assert loss.dim() == 0
    close(loss, aggregate(per_token_losses(0.2, 0.28), loss_type))
    # symmetric clipping changes the rho = 1.5 token (clipped at 1.2 instead of 1.28)
    sym = grpo_loss(logps, old, adv, mask, eps_low=0.2, eps_high=0.2, loss_type=loss_type)
    close(sym, aggregate(per_token_losses(0.2, 0.2), loss_type))
    assert not torch.isclose(sym, loss)


def test_grpo_hand_numbers_dapo():
    # (-1.28 - 0.7 + 1.8 + 2.5 + 1.6) / 5
    logps, old, adv, mask = grpo_inputs()
    close(grpo_loss(logps, old, adv, mask, eps_high=0.28), (-1.28 - 0.7 + 1.8 + 2.5 + 1.6) / 5)


@pytest.mark.parametrize("loss_type", ["grpo", "dapo", "dr_grpo"])
def test_grpo_k3_term(loss_type):
    ref = [[-1.2, -1.5, -0.1], [-1.5, -1.0, -2.0]]
    logps, old, adv, mask = grpo_inputs()
    loss = grpo_loss(logps, old, adv, mask, ref_logps=t(ref), beta=0.04, loss_type=loss_type)
    close(loss, aggregate(per_token_losses(0.2, 0.2, beta=0.04, ref=ref), loss_type))
    # beta = 0: the reference is ignored by the loss
    no_kl = grpo_loss(logps, old, adv, mask, ref_logps=t(ref), beta=0.0, loss_type=loss_type)
    close(no_kl, aggregate(per_token_losses(0.2, 0.2), loss_type))


def test_grpo_stats_gradient_and_token_advantages():
    ref = [[-1.2, -1.5, -0.1], [-1.5, -1.0, -2.0]]
    logps, old, adv, mask = grpo_inputs(requires_grad=True)
    loss, stats = grpo_loss_with_stats(logps, old, adv, mask, ref_logps=t(ref), eps_high=0.28)
    # clipped: row 0 rho 1.5 (A > 0, high) and row 1 rho 0.5 (A < 0, low), out of 5 tokens
    close(stats["clip_ratio"], 2 / 5)
    close(stats["clip_ratio/high_mean"], 1 / 5)
    close(stats["clip_ratio/low_mean"], 1 / 5)
    k3 = [
        math.exp(ref[i][j] - LOGPS[i][j]) - (ref[i][j] - LOGPS[i][j]) - 1
        for i in range(2)
        for j in range(3)
        if MASK[i][j]
    ]
    close(stats["kl"], sum(k3) / 5)
    loss.backward()
    # clipped tokens and padding get no gradient; unclipped ones do
    assert logps.grad[0, 0] == 0 and logps.grad[1, 2] == 0 and logps.grad[0, 2] == 0
    assert logps.grad[0, 1] != 0 and logps.grad[1, 1] != 0
    # [B, T] advantages equal to the broadcast [B] ones give the same loss
    full_adv = adv.unsqueeze(1).expand(2, 3).clone()
    close(grpo_loss(logps.detach(), old, full_adv, mask, eps_high=0.28), loss.item())


def test_grpo_errors():
    logps, old, adv, mask = grpo_inputs()
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logps, old, adv, mask, loss_type="nope")
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logps, old, t([1.0, 2.0, 3.0]), mask)


# ---------------------------------------------------------------------------------------------
# PPO pieces
# ---------------------------------------------------------------------------------------------
def test_ppo_policy_loss():
    logps, old, adv, mask = grpo_inputs()
    adv_bt = adv.unsqueeze(1).expand(2, 3)
    loss, clipfrac = ppo_policy_loss(logps, old, adv_bt, mask, clip_eps=0.2)
    lt = per_token_losses(0.2, 0.2)  # max(-A rho, -A clip(rho)) == -min(A rho, A clip(rho))
    close(loss, sum(lt[i][j] for i in range(2) for j in range(3) if MASK[i][j]) / 5)
    close(clipfrac, 2 / 5)


def test_ppo_value_loss():
    values, old, returns = t([[1.0, 2.0]]), t([[0.5, 2.1]]), t([[1.2, 1.0]])
    # token 0: (1 - 1.2)^2 = 0.04; clipped v = 0.5 + 0.2 = 0.7 -> (0.7 - 1.2)^2 = 0.25 -> 0.25
    # token 1: (2 - 1)^2 = 1; clipped v = 2.1 - 0.1 = 2.0 -> 1 -> 1
    loss, clipfrac = ppo_value_loss(values, old, returns, torch.ones(1, 2), clip_eps=0.2)
    close(loss, 0.5 * (0.25 + 1.0) / 2)
    close(clipfrac, 0.5)


def test_kl_penalty_kinds():
    lp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    d = [0.5, -1.0]
    close(kl_penalty(lp, ref, "k1"), d)
    close(kl_penalty(lp, ref, "k2"), [x * x / 2 for x in d])
    close(kl_penalty(lp, ref, "k3"), [math.exp(-x) + x - 1 for x in d])
    close(kl_penalty(lp, ref, "abs"), [0.5, 1.0])
    with pytest.raises(ValueError, match="k3"):
        kl_penalty(lp, ref, "k9")


def test_masked_stats_and_entropy():
    x, m = t([[1.0, 2.0, 100.0], [3.0, 6.0, -50.0]]), torch.tensor([[1, 1, 0], [1, 1, 0]])
    close(masked_mean(x, m), 3.0)
    close(masked_mean(x, m, dim=1), [1.5, 4.5])
    # masked entries 1,2,3,6: mean 3, unbiased var (4 + 1 + 0 + 9) / 3
    sd = math.sqrt(14 / 3 + 1e-8)
    close(masked_whiten(x, m), [[-2 / sd, -1 / sd, 0.0], [0.0, 3 / sd, 0.0]])
    close(masked_whiten(x, m, shift_mean=False), [[-2 / sd + 3, -1 / sd + 3, 0.0], [3.0, 3 / sd + 3, 0.0]])
    logits = t([[0.0, 0.0], [0.0, math.log(3.0)]])
    close(entropy_from_logits(logits), [math.log(2.0), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])


# ---------------------------------------------------------------------------------------------
# reward model
# ---------------------------------------------------------------------------------------------
def test_bradley_terry():
    rc, rr = t([2.0, 0.5]), t([1.0, 1.5])
    close(bradley_terry_loss(rc, rr), [-log_sigmoid(1.0), -log_sigmoid(-1.0)])
    close(bradley_terry_loss(rc, rr, margin=t([0.5, 0.0])), [-log_sigmoid(0.5), -log_sigmoid(-1.0)])
    close(bradley_terry_loss(rc, rr, margin=1.0), [-log_sigmoid(0.0), -log_sigmoid(-2.0)])


def test_kl_shaped_rewards_by_hand():
    from alignkit.losses import kl_shaped_rewards

    logps = torch.tensor([[0.5, 0.2, 0.0], [0.1, 0.0, 0.0]])
    ref = torch.tensor([[0.3, 0.4, 0.0], [0.1, 9.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    rewards, kl = kl_shaped_rewards(torch.tensor([1.0, 2.0]), logps, ref, mask, kl_coef=0.1, kind="k1")
    # k1: KL_t = logp - ref on the mask: [[0.2, -0.2, 0], [0, 0 (masked), 0]]
    assert torch.allclose(kl, torch.tensor([[0.2, -0.2, 0.0], [0.0, 0.0, 0.0]]), atol=1e-6)
    # -0.1 * KL_t, plus the score at the last response token (index 1 and 0)
    assert torch.allclose(rewards, torch.tensor([[-0.02, 0.02 + 1.0, 0.0], [2.0, 0.0, 0.0]]), atol=1e-6)


def test_adaptive_kl_update_by_hand():
    from alignkit.losses import adaptive_kl_update

    # e = clip(9/6 - 1, -0.2, 0.2) = 0.2; 0.1 * (1 + 0.2 * 100 / 1000) = 0.102
    assert adaptive_kl_update(0.1, 9.0, 6.0, 100, 1000) == pytest.approx(0.102)

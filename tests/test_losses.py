"""DPO / IPO / BoNBoN / SFT losses against hand-computed values, gradient signs and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from bonbon.losses import LOSSES, bonbon_loss, dpo_loss, ipo_loss, margin, sft_loss

# Two hand examples, each (pi_c, pi_r, ref_c, ref_r):
#   A: (-10, -12, -11, -11): h = (-10 + 11) - (-12 + 11) = 1 - (-1) = 2
#   B: (-5, -4, -4, -6):     h = (-5 + 4) - (-4 + 6) = -1 - 2 = -3
EX_A = (-10.0, -12.0, -11.0, -11.0)
EX_B = (-5.0, -4.0, -4.0, -6.0)


def _t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def _batch(*examples: tuple[float, float, float, float]) -> list[torch.Tensor]:
    """Columns of the examples as four 1-D tensors (pi_c, pi_r, ref_c, ref_r)."""
    return [_t(*col) for col in zip(*examples, strict=True)]


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------------------- margin


def test_margin_hand_values() -> None:
    h = margin(*_batch(EX_A, EX_B))
    assert h.tolist() == [2.0, -3.0]


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        margin(_t(1.0, 2.0), _t(1.0, 2.0), _t(1.0, 2.0), _t(1.0))
    with pytest.raises(ValueError, match="1-D"):
        m = torch.zeros(2, 1, dtype=torch.float64)
        dpo_loss(m, m, m, m, beta=0.1)


# ---------------------------------------------------------------------------- DPO


def test_dpo_hand_values_per_example() -> None:
    # A, beta=0.1: beta h = 0.2, loss = -log sigmoid(0.2) = log(1 + e^-0.2)
    # B, beta=0.1: beta h = -0.3, loss = log(1 + e^0.3)
    losses, metrics = dpo_loss(*_batch(EX_A, EX_B), beta=0.1)
    assert losses.shape == (2,)  # not reduced
    assert losses[0].item() == pytest.approx(math.log(1 + math.exp(-0.2)))  # 0.598139
    assert losses[0].item() == pytest.approx(0.5981388693)
    assert losses[1].item() == pytest.approx(math.log(1 + math.exp(0.3)))  # 0.854355
    # rewards beta (pi - ref): A: 0.1 * 1, 0.1 * -1; B: 0.1 * -1, 0.1 * 2
    assert metrics["chosen_reward"].tolist() == pytest.approx([0.1, -0.1])
    assert metrics["rejected_reward"].tolist() == pytest.approx([-0.1, 0.2])
    assert metrics["reward_accuracy"].tolist() == [1.0, 0.0]
    assert metrics["margin"].tolist() == pytest.approx([2.0, -3.0])
    assert metrics["sft"].tolist() == pytest.approx([10.0, 5.0])  # -pi_c
    assert set(metrics) == {"sft", "chosen_reward", "rejected_reward", "margin", "reward_accuracy"}


def test_dpo_hand_value_other_beta() -> None:
    # B, beta=0.5: beta h = -1.5, loss = log(1 + e^1.5) = 1.701413
    losses, _ = dpo_loss(*_batch(EX_B), beta=0.5)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(1.5)))
    assert losses.item() == pytest.approx(1.7014132779)


def test_dpo_label_smoothing_hand_value() -> None:
    # A, beta=0.1, eps=0.1: 0.9 * log(1 + e^-0.2) + 0.1 * log(1 + e^0.2)
    losses, _ = dpo_loss(*_batch(EX_A), beta=0.1, label_smoothing=0.1)
    expected = 0.9 * math.log(1 + math.exp(-0.2)) + 0.1 * math.log(1 + math.exp(0.2))
    assert losses.item() == pytest.approx(expected)  # 0.9 * 0.598139 + 0.1 * 0.798139
    assert losses.item() == pytest.approx(0.6181388694)


def test_dpo_reference_free_hand_value() -> None:
    # B reference-free, beta=0.5: h = pi_c - pi_r = -5 + 4 = -1, beta h = -0.5, loss = log(1 + e^0.5)
    losses, metrics = dpo_loss(*_batch(EX_B), beta=0.5, reference_free=True)
    assert losses.item() == pytest.approx(math.log(1 + math.exp(0.5)))  # 0.974077
    # references treated as 0: rewards beta * pi, and the margin the loss saw
    assert metrics["chosen_reward"].item() == pytest.approx(-2.5)
    assert metrics["rejected_reward"].item() == pytest.approx(-2.0)
    assert metrics["margin"].item() == pytest.approx(-1.0)
    # and it differs from the referenced loss (beta h = -1.5 there)
    with_ref, _ = dpo_loss(*_batch(EX_B), beta=0.5)
    assert with_ref.item() != pytest.approx(losses.item())


@pytest.mark.parametrize("name", ["dpo", "ipo", "bonbon", "sft"])
def test_metrics_are_detached(name: str) -> None:
    pc, pr = _t(-10.0, grad=True), _t(-12.0, grad=True)
    options = {"sft": {}, "bonbon": {"beta": 0.1, "alpha": 0.3}}.get(name, {"beta": 0.1})
    losses, metrics = LOSSES[name](pc, pr, _t(-11.0), _t(-11.0), **options)
    assert losses.requires_grad and metrics
    assert all(not v.requires_grad for v in metrics.values())


@pytest.mark.parametrize("example", [EX_A, EX_B])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_dpo_gradient_signs_and_values(example: tuple[float, float, float, float], eps: float) -> None:
    beta = 0.1
    pc, pr = _t(example[0], grad=True), _t(example[1], grad=True)
    losses, _ = dpo_loss(pc, pr, _t(example[2]), _t(example[3]), beta=beta, label_smoothing=eps)
    losses.sum().backward()
    # push the chosen log-prob up, the rejected down
    assert pc.grad.item() < 0
    assert pr.grad.item() > 0
    # d/d pi_c of -(1-eps) log s(bh) - eps log s(-bh) = -(1-eps) b s(-bh) + eps b s(bh)
    h = (example[0] - example[2]) - (example[1] - example[3])
    expected = -(1 - eps) * beta * _sigmoid(-beta * h) + eps * beta * _sigmoid(beta * h)
    assert pc.grad.item() == pytest.approx(expected)
    assert pr.grad.item() == pytest.approx(-expected)


def test_dpo_stable_for_large_margins() -> None:
    losses, _ = dpo_loss(_t(0.0, -2000.0), _t(-2000.0, 0.0), _t(0.0, 0.0), _t(0.0, 0.0), beta=1.0)
    assert torch.isfinite(losses).all()
    assert losses[0].item() == pytest.approx(0.0, abs=1e-12)
    assert losses[1].item() == pytest.approx(2000.0)


# ---------------------------------------------------------------------------- IPO


def test_ipo_hand_values() -> None:
    # A, beta=0.1: 1/(2 beta) = 5, (2 - 5)^2 = 9;  B, beta=0.1: (-3 - 5)^2 = 64
    losses, metrics = ipo_loss(*_batch(EX_A, EX_B), beta=0.1)
    assert losses.tolist() == pytest.approx([9.0, 64.0])
    assert metrics["ipo"].tolist() == pytest.approx([9.0, 64.0])
    assert metrics["chosen_reward"].tolist() == pytest.approx([0.1, -0.1])
    assert metrics["rejected_reward"].tolist() == pytest.approx([-0.1, 0.2])
    assert metrics["margin"].tolist() == pytest.approx([2.0, -3.0])
    assert metrics["sft"].tolist() == pytest.approx([10.0, 5.0])
    # B, beta=0.5: 1/(2 beta) = 1, (-3 - 1)^2 = 16
    losses, _ = ipo_loss(*_batch(EX_B), beta=0.5)
    assert losses.item() == pytest.approx(16.0)


def test_ipo_is_on_summed_not_length_normalised_logps() -> None:
    # same per-token log-ratios but twice the tokens: the summed margin doubles, so the loss changes
    short, _ = ipo_loss(_t(-10.0), _t(-12.0), _t(-11.0), _t(-11.0), beta=0.1)  # h = 2 -> 9
    long, _ = ipo_loss(_t(-20.0), _t(-24.0), _t(-22.0), _t(-22.0), beta=0.1)  # h = 4 -> 1
    assert short.item() == pytest.approx(9.0)
    assert long.item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("pi_c", "sign"),
    [
        (-10.0, -1),  # h = 2 < 5: chosen pushed up
        (-7.0, 1),  # h = 5 + 1 = 6 > 5: overshoot, chosen pushed down
    ],
)
def test_ipo_gradient_sign_flips_at_target(pi_c: float, sign: int) -> None:
    beta = 0.1  # target margin 1/(2 beta) = 5
    pc, pr = _t(pi_c, grad=True), _t(-12.0, grad=True)
    losses, _ = ipo_loss(pc, pr, _t(-11.0), _t(-11.0), beta=beta)
    losses.sum().backward()
    h = (pi_c + 11.0) - (-12.0 + 11.0)
    expected = 2 * (h - 1 / (2 * beta))  # d/d pi_c (h - t)^2
    assert pc.grad.item() == pytest.approx(expected)
    assert pr.grad.item() == pytest.approx(-expected)
    assert math.copysign(1, pc.grad.item()) == sign
    assert math.copysign(1, pr.grad.item()) == -sign


def test_ipo_zero_gradient_at_target() -> None:
    pc, pr = _t(-8.0, grad=True), _t(-12.0, grad=True)  # h = 3 - (-1) = 4 = 1/(2 * 0.125)
    losses, _ = ipo_loss(pc, pr, _t(-11.0), _t(-11.0), beta=0.125)
    losses.sum().backward()
    assert losses.item() == pytest.approx(0.0)
    assert pc.grad.item() == pytest.approx(0.0)


# ---------------------------------------------------------------------------- BoNBoN


def test_bonbon_alpha0_is_ipo() -> None:
    batch = _batch(EX_A, EX_B)
    losses, metrics = bonbon_loss(*batch, beta=0.1, alpha=0.0)
    ipo, _ = ipo_loss(*batch, beta=0.1)
    torch.testing.assert_close(losses, ipo)
    assert losses.tolist() == pytest.approx([9.0, 64.0])


def test_bonbon_alpha1_is_sft() -> None:
    losses, metrics = bonbon_loss(*_batch(EX_A, EX_B), beta=0.1, alpha=1.0)
    assert losses.tolist() == pytest.approx([10.0, 5.0])  # -pi_c
    assert metrics["sft"].tolist() == pytest.approx([10.0, 5.0])


def test_bonbon_default_mix_hand_values() -> None:
    # default alpha = 0.005: A: 0.005 * 10 + 0.995 * 9 = 9.005;  B: 0.005 * 5 + 0.995 * 64 = 63.705
    losses, metrics = bonbon_loss(*_batch(EX_A, EX_B), beta=0.1)
    assert losses.tolist() == pytest.approx([9.005, 63.705])
    assert metrics["sft"].tolist() == pytest.approx([10.0, 5.0])
    assert metrics["ipo"].tolist() == pytest.approx([9.0, 64.0])
    assert metrics["margin"].tolist() == pytest.approx([2.0, -3.0])
    assert metrics["chosen_reward"].tolist() == pytest.approx([0.1, -0.1])
    assert metrics["rejected_reward"].tolist() == pytest.approx([-0.1, 0.2])
    assert metrics["reward_accuracy"].tolist() == [1.0, 0.0]
    assert set(metrics) == {"sft", "ipo", "chosen_reward", "rejected_reward", "margin", "reward_accuracy"}


def test_bonbon_mix_half() -> None:
    # B, beta=0.5, alpha=0.5: 0.5 * 5 + 0.5 * 16 = 10.5
    losses, _ = bonbon_loss(*_batch(EX_B), beta=0.5, alpha=0.5)
    assert losses.item() == pytest.approx(10.5)


def test_bonbon_sft_reuses_chosen_logp_gradient() -> None:
    # A, beta=0.1, alpha=0.3: d/d pi_c = 0.3 * (-1) + 0.7 * 2 (h - 5) = -0.3 + 0.7 * (-6) = -4.5
    pc, pr = _t(-10.0, grad=True), _t(-12.0, grad=True)
    losses, metrics = bonbon_loss(pc, pr, _t(-11.0), _t(-11.0), beta=0.1, alpha=0.3)
    losses.sum().backward()
    assert pc.grad.item() == pytest.approx(-4.5)
    assert pr.grad.item() == pytest.approx(0.7 * -2 * (2 - 5))  # = 4.2
    assert all(not v.requires_grad for v in metrics.values())


# ---------------------------------------------------------------------------- SFT


def test_sft_hand_values_and_gradient() -> None:
    # loss = -pi_c per example; rejected and reference log-probs play no part
    pc = _t(-10.0, -5.0, grad=True)
    losses, metrics = sft_loss(pc, None, None, None)
    assert losses.tolist() == [10.0, 5.0] and metrics["sft"].tolist() == [10.0, 5.0]
    assert set(metrics) == {"sft"}
    losses.sum().backward()
    assert pc.grad.tolist() == [-1.0, -1.0]
    same, _ = sft_loss(*_batch(EX_A, EX_B))
    assert same.tolist() == [10.0, 5.0]


# ---------------------------------------------------------------------------- one interface, bad inputs


def test_losses_by_name_share_one_interface() -> None:
    assert LOSSES == {"dpo": dpo_loss, "ipo": ipo_loss, "bonbon": bonbon_loss, "sft": sft_loss}
    batch = _batch(EX_A, EX_B)
    expected = {"dpo": [math.log(1 + math.exp(-0.2)), math.log(1 + math.exp(0.3))], "ipo": [9.0, 64.0],
                "bonbon": [9.005, 63.705], "sft": [10.0, 5.0]}
    for name, fn in LOSSES.items():
        options = {"sft": {}, "bonbon": {"beta": 0.1, "alpha": 0.005}}.get(name, {"beta": 0.1})
        losses, metrics = fn(*batch, **options)
        assert losses.tolist() == pytest.approx(expected[name]), name
        assert metrics["sft"].tolist() == pytest.approx([10.0, 5.0]), name
        assert all(v.shape == (2,) for v in metrics.values()), name


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        ipo_loss(*_batch(EX_A), beta=0.1, alpha=0.5)
    with pytest.raises(TypeError):
        dpo_loss(*_batch(EX_A), 0.1)  # options are keywords: a positional beta is refused


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan")])
@pytest.mark.parametrize("name", ["dpo", "ipo", "bonbon"])
def test_nonpositive_beta_rejected(name: str, beta: float) -> None:
    with pytest.raises(ValueError, match="beta"):
        LOSSES[name](*_batch(EX_A), beta=beta)


@pytest.mark.parametrize("alpha", [-0.01, 1.01])
def test_alpha_out_of_range_rejected(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        bonbon_loss(*_batch(EX_A), beta=0.1, alpha=alpha)


@pytest.mark.parametrize("eps", [-0.1, 0.5, 0.7])
def test_label_smoothing_out_of_range_rejected(eps: float) -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(*_batch(EX_A), beta=0.1, label_smoothing=eps)

"""training/distill.py's KL: the value and gradient of the textbook form, masked columns
included, at the temperatures the student config allows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.distill import _kl


def _reference(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """KL(softmax(t/T) || softmax(s/T)), mean over rows, ignoring columns masked in both."""
    keep = torch.isfinite(t)
    log_q = F.log_softmax(s / T, dim=1)
    log_p = F.log_softmax(t / T, dim=1)
    terms = torch.where(keep, log_p.exp() * (log_p - log_q), torch.zeros_like(s))
    return terms.sum() / s.shape[0]


@pytest.mark.parametrize("T", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("masked", [False, True])
def test_kl_value_and_gradient_match_the_textbook_form(T, masked):
    g = torch.Generator().manual_seed(7)
    s = torch.randn(64, 300, generator=g, dtype=torch.float64) * 4
    t = torch.randn(64, 300, generator=g, dtype=torch.float64) * 4
    if masked:  # an accidental hit: the same column at -inf in both, as candidate_logits does
        rows = torch.arange(0, 64, 3)
        cols = torch.randint(1, 300, (len(rows),), generator=g)
        s[rows, cols] = t[rows, cols] = float("-inf")
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    got, want = _kl(a, t, T), _reference(b, t, T)
    got.backward()
    want.backward()
    assert torch.isfinite(got) and torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert torch.allclose(a.grad, b.grad, rtol=1e-8, atol=1e-12)
    assert not a.grad.isnan().any()


def test_kl_of_a_student_equal_to_the_teacher_is_zero_and_still():
    t = torch.randn(8, 50, dtype=torch.float64)
    s = t.clone().requires_grad_()
    loss = _kl(s, t, 1.0)
    loss.backward()
    assert abs(loss.item()) < 1e-12 and s.grad.abs().max().item() < 1e-12


def test_a_diverged_student_or_teacher_still_shows_nan():
    t = torch.randn(4, 10)
    s = torch.full((4, 10), float("nan"), requires_grad=True)
    assert torch.isnan(_kl(s, t, 1.0))  # not a silent 0 (masked columns only are zeroed)
    t[1, 3] = float("nan")
    assert torch.isnan(_kl(torch.randn(4, 10), t, 1.0))

"""training/dropout.py: the CPU mask is Bernoulli(p) with an unbiased scale, and the written-out
attention is scaled dot-product attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training import dropout as D


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5, 0.9])
def test_mask_drops_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    n = 1_000_000
    mask = D.keep_mask((n,), p, torch.float32)
    dropped = float((mask == 0).float().mean())
    # Binomial standard error at n = 1e6 is at most 0.0005; 5 of them.
    assert abs(dropped - p) < 0.0025
    kept = mask[mask != 0]
    assert torch.all(kept == kept[0])  # one scale for every kept element
    # E[mask] = 1, the input's expectation; the mean's standard error is sqrt(p/(1-p)/n), 5 of them
    assert abs(float(mask.mean()) - 1.0) < 5 * (p / (1 - p) / n) ** 0.5


def test_both_bytes_of_each_16_bit_level_decide():
    """The sign bit decides p = 1/2; at p = 128/65536 the threshold falls inside one value of
    the high byte, so the low byte decides (a lane whose low byte were constant would drop
    0 or 1/256, not 1/512)."""
    torch.manual_seed(1)
    n = 1 << 20
    half = D.keep_mask((n,), 0.5, torch.float32)
    assert abs(float((half == 0).float().mean()) - 0.5) < 0.003  # 6 standard errors
    p = 128 / 65536
    share = float((D.keep_mask((n,), p, torch.float32) == 0).float().mean())
    assert abs(share - p) < 0.0003  # 7 standard errors; the broken cases are 0 and 2p


def test_neighbouring_elements_are_independent():
    """The four 16-bit lanes of one 64-bit draw are independent draws: at p = 1/2 a pair of
    neighbours is dropped together a quarter of the time (copied lanes: a half)."""
    torch.manual_seed(2)
    mask = D.keep_mask((1 << 20,), 0.5, torch.float32) == 0
    for lag in (1, 2, 3, 4):
        both = float((mask[:-lag] & mask[lag:]).float().mean())
        assert abs(both - 0.25) < 0.003  # 7 standard errors


def test_seeded_masks_repeat_and_shapes_hold():
    torch.manual_seed(7)
    a = D.keep_mask((3, 5, 7), 0.2, torch.float32)
    torch.manual_seed(7)
    b = D.keep_mask((3, 5, 7), 0.2, torch.float32)
    assert a.shape == (3, 5, 7) and torch.equal(a, b)
    assert D.keep_mask((0, 4), 0.2, torch.float32).shape == (0, 4)
    assert D.keep_mask((1,), 0.2, torch.bfloat16).dtype == torch.bfloat16


def test_dropout_forward_and_gradient():
    torch.manual_seed(3)
    x = torch.randn(4, 6, 8, requires_grad=True)
    y = D.dropout(x, 0.3, training=True)
    y.sum().backward()
    mask = (y.detach() / x.detach()).nan_to_num()
    assert x.grad is not None
    assert torch.allclose(x.grad, mask, atol=1e-6)  # d(x * m)/dx = m
    assert D.dropout(x, 0.3, training=False) is x
    assert D.dropout(x, 0.0, training=True) is x


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_mask_refuses_p_outside_the_unit_interval(bad):
    with pytest.raises(ValueError, match="dropout must be in"):
        D.keep_mask((4,), bad, torch.float32)


def test_module_checks_p_and_has_no_state():
    layer = D.Dropout(0.2)
    assert layer.state_dict() == {}
    assert "p=0.2" in repr(layer)
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match="dropout"):
            D.Dropout(bad)


def test_attention_is_sdpa_with_the_cheaper_mask(monkeypatch):
    torch.manual_seed(5)
    q, k, v = (torch.randn(2, 2, 6, 4) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(D.attention(q, k, v, mask, 0.0), want, atol=1e-6)
    # With p > 0 the written-out path runs; with every weight kept it is SDPA again.
    monkeypatch.setattr(D, "keep_mask", lambda shape, p, dtype: torch.ones(shape, dtype=dtype))
    assert torch.allclose(D.attention(q, k, v, mask, 0.4), want, atol=1e-6)


def test_attention_drops_the_weights(monkeypatch):
    """The mask multiplies the softmax weights (B, H, Lq, Lk), not the output."""
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 2, 6, 4) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    real, drawn = D.keep_mask, []

    def recording(shape, p, dtype):
        drawn.append(real(shape, p, dtype))
        return drawn[-1]

    monkeypatch.setattr(D, "keep_mask", recording)
    got = D.attention(q, k, v, mask, 0.5)
    assert len(drawn) == 1 and drawn[0].shape == (2, 2, 6, 6)
    assert bool((drawn[0] == 0).any())  # something was dropped
    scores = (q @ k.transpose(-2, -1) / 2.0).masked_fill(~mask, float("-inf"))
    want = (torch.softmax(scores, dim=-1) * drawn[0]) @ v
    assert torch.allclose(got, want, atol=1e-6)

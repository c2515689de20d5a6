"""What the PyTorch-oracle tests share: float64 inputs and one comparison of a minires
function with its torch twin, forward and every input gradient.

Imported by the test modules (not a test module itself); torch is passed in or imported
lazily, so importing this never needs torch."""

from __future__ import annotations

from typing import Any

import numpy as np

import minires as mr


def t64(a: Any, grad: bool = True) -> mr.Tensor:
    """A float64 minires tensor of ``a`` (requiring grad by default)."""
    return mr.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def spread(shape: tuple[int, ...], rng: np.random.Generator, low=-2.0, high=2.0) -> np.ndarray:
    """Distinct values in [low, high] with gaps >> gradcheck's eps: no ties, and for up to
    64 values none within 3e-4 of 0 or of the clamp bounds the tests use."""
    n = int(np.prod(shape))
    vals = rng.permutation(n).astype(np.float64) + 0.37
    return (low + (high - low) * vals / n).reshape(shape)


def grads_match(mr_fn, torch_fn, arrays, rtol=1e-10, atol=1e-12, check_dtype=True):
    """Forward and every input gradient of ``mr_fn`` vs ``torch_fn`` on float64 copies
    of ``arrays``, with one random upstream gradient: the output's shape (and dtype,
    unless ``check_dtype`` is False) and values, each gradient's values and dtype
    (float64). Returns the minires output."""
    import torch

    ts = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out_t = torch_fn(*ts)
    g = np.random.default_rng(1).standard_normal(tuple(out_t.shape))
    out_t.backward(torch.tensor(g))
    ms = [t64(a) for a in arrays]
    out_m = mr_fn(*ms)
    want = out_t.detach().numpy()
    assert out_m.shape == tuple(out_t.shape), (out_m.shape, tuple(out_t.shape))
    if check_dtype:
        assert out_m.dtype == want.dtype, (out_m.dtype, want.dtype)
    np.testing.assert_allclose(out_m.data, want, rtol=rtol, atol=atol)
    out_m.backward(g)
    for m, t in zip(ms, ts):
        assert m.grad is not None and m.grad.shape == m.shape and m.grad.dtype == np.float64
        np.testing.assert_allclose(m.grad, t.grad.numpy(), rtol=rtol, atol=atol)
    return out_m

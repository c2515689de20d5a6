"""Batch transforms: data augmentation and normalisation applied to a whole batch
``x`` of shape (N, C, H, W) at once — vectorised NumPy, no Python loop over images or
pixels.

Unlike torchvision (one image at a time, inside the Dataset), every transform here is a
callable ``t(x, rng) -> x`` on a batch. ``rng`` is a ``numpy.random.Generator`` or, from
the `DataLoader`, a `SampleRNG`: the same methods, but the k-th draw of each image is
keyed by (seed, epoch, that image's dataset index), so an image is augmented the same
way whatever batch, or MPI rank, it is in. Transforms draw one value per image per call
(``size=len(x)``), which both kinds of rng serve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BatchTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective scrambling of uint64s (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class SampleRNG:
    """Counter-based random numbers per sample: the k-th value drawn for sample ``i`` is
    a hash of (seed, epoch, i, k), so it does not depend on which other samples share the
    batch. Duck-types the ``numpy.random.Generator`` methods transforms use
    (``random``, ``integers``, ``uniform``, ``normal``) for ``size=n`` or ``(n, ...)``
    with n = number of samples; vectorised (no Python loop over images).

    Args:
        seed, epoch: the run's seed and the epoch.
        indices: (n,) dataset indices of the batch's samples, in batch order.
    """

    def __init__(self, seed: int, epoch: int, indices: Sequence[int] | np.ndarray):
        idx = np.asarray(indices, dtype=np.int64).astype(np.uint64)
        with np.errstate(over="ignore"):
            base = _mix64(np.array([seed], np.uint64) * _GOLDEN + np.uint64(epoch))
            self._keys = _mix64(base ^ _mix64(idx + np.uint64(0x632BE59BD9B4E019)))
        self.n = len(idx)
        self._draws = 0  # values drawn so far per sample

    def _uniform01(self, size: int | tuple[int, ...] | None) -> np.ndarray:
        shape = (self.n,) if size is None else ((size,) if np.isscalar(size) else tuple(size))
        if not shape or shape[0] != self.n:
            raise ValueError(
                f"SampleRNG: draws must be per sample, size ({self.n}, ...); got size {size}"
            )
        per = int(np.prod(shape[1:], dtype=np.int64))
        k = np.arange(self._draws, self._draws + per, dtype=np.uint64)
        self._draws += per
        with np.errstate(over="ignore"):
            bits = _mix64(self._keys[:, None] + (k[None, :] + np.uint64(1)) * _GOLDEN)
        return ((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)

    def random(self, size: int | tuple[int, ...] | None = None) -> np.ndarray:
        """Uniform floats in [0, 1)."""
        return self._uniform01(size)

    def uniform(self, low: float = 0.0, high: float = 1.0, size=None) -> np.ndarray:
        """Uniform floats in [low, high)."""
        return low + (high - low) * self._uniform01(size)

    def integers(self, low: int, high: int | None = None, size=None) -> np.ndarray:
        """Uniform int64 in [low, high) (or [0, low) if high is None)."""
        if high is None:
            low, high = 0, low
        if high <= low:
            raise ValueError(f"SampleRNG.integers: high ({high}) must exceed low ({low})")
        u = self._uniform01(size)
        return np.minimum(low + np.floor(u * (high - low)).astype(np.int64), high - 1)

    def normal(self, loc: float = 0.0, scale: float = 1.0, size=None) -> np.ndarray:
        """Normal draws (Box-Muller on two uniforms per value)."""
        u1, u2 = self._uniform01(size), self._uniform01(size)
        return loc + scale * np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2 * np.pi * u2)

    def __repr__(self) -> str:
        return f"SampleRNG(n={self.n}, draws={self._draws})"


def _check_batch(x: np.ndarray, name: str) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(
            f"{name}: expected a batch of images (N, C, H, W), got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )


class Compose:
    """Apply transforms in order: ``Compose([ToFloat(), RandomCrop(32, 4), Normalize(m, s)])``."""

    def __init__(self, transforms: Sequence[BatchTransform]):
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for t in self.transforms:
            x = t(x, rng)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class ToFloat:
    """Integer pixels -> float32 times ``scale`` (uint8 CIFAR: ``scale=1/255`` gives [0, 1])."""

    def __init__(self, scale: float = 1.0 / 255):
        self.scale = scale

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return x.astype(np.float32) * np.float32(self.scale)

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale:.6g})"


class Cast:
    """``x.astype(dtype)`` — e.g. float64 batches for a float64 model (``--dtype``)."""

    def __init__(self, dtype: str | np.dtype = np.float32):
        self.dtype = np.dtype(dtype)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        return x.astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        return f"Cast({self.dtype.name})"


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]``; ``mean`` and ``std`` have one value per channel."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if np.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be positive, got {list(self.std.ravel())}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        _check_batch(x, "Normalize")
        if x.shape[1] != len(self.mean) and len(self.mean) != 1:
            raise ValueError(f"Normalize: {len(self.mean)} channel stats for {x.shape[1]} channels")
        return ((x - self.mean) / self.std).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


class RandomCrop:
    """Zero-pad every image by ``padding`` pixels on each side, then cut a random
    ``size`` x ``size`` window from each (its own offset per image) — the CIFAR recipe of
    He et al. (pad 4, crop 32).

    Vectorised: the padded batch is viewed as all its (H, W) windows (a strided view, no
    copy) and one fancy-index picks each image's window.
    """

    def __init__(self, size: int | tuple[int, int], padding: int = 0):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        if padding < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self.padding = int(padding)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch(x, "RandomCrop")
        n, _, h, w = x.shape
        p, (ch, cw) = self.padding, self.size
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        ph, pw = padded.shape[2:]
        if ch > ph or cw > pw:
            raise ValueError(f"RandomCrop: crop {self.size} larger than padded image {(ph, pw)}")
        top = rng.integers(0, ph - ch + 1, size=n)
        left = rng.integers(0, pw - cw + 1, size=n)
        windows = sliding_window_view(
            padded, (ch, cw), axis=(2, 3)
        )  # (N, C, ph-ch+1, pw-cw+1, ch, cw)
        return np.ascontiguousarray(windows[np.arange(n), :, top, left])  # (N, C, ch, cw)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p`` (not for digits: a mirrored 2
    is not a 2)."""

    def __init__(self, p: float = 0.5):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_batch(x, "RandomHorizontalFlip")
        flip = rng.random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"

"""Batch transforms: data augmentation and normalisation applied to a whole batch
``x`` of shape (N, C, H, W) at once — vectorised NumPy, no Python loop over images or
pixels.

Unlike torchvision (one image at a time, inside the Dataset), every transform here is a
callable ``t(x, rng) -> x`` on a batch; the `DataLoader` calls it with its own seeded
``numpy.random.Generator`` so augmentation is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BatchTransform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


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

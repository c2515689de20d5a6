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

import inspect
from collections.abc import Callable, Sequence
from typing import Any

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


def _batch_in(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """``x`` (an ndarray or a minires Tensor) as an (N, C, H, W) ndarray, and whether it
    was a Tensor (the transform then returns a Tensor)."""
    from minires.tensor import Tensor

    is_tensor = isinstance(x, Tensor)
    a = x.data if is_tensor else x
    _check_batch(a, name)
    return a, is_tensor


def _batch_out(a: np.ndarray, is_tensor: bool) -> Any:
    if not is_tensor:
        return a
    from minires.tensor import Tensor

    return Tensor(a)


def _rng_or_global(rng: Any) -> Any:
    """``rng``, or minires' global generator (``mr.manual_seed``) when None."""
    if rng is not None:
        return rng
    from minires.random import get_rng

    return get_rng()


def _takes_rng(t: Callable[..., Any]) -> bool:
    """Whether ``t`` can be called as ``t(x, rng)`` (minires' transforms) rather than
    only ``t(x)`` (a torchvision-style one-argument callable)."""
    try:
        sig = inspect.signature(t)
    except (TypeError, ValueError):
        return True
    try:
        sig.bind(None, None)
    except TypeError:
        return False
    return True


class Compose:
    """Apply transforms in order: ``Compose([ToFloat(), RandomCrop(32, 4), Normalize(m, s)])``.

    Each transform is called ``t(x, rng)``, or ``t(x)`` if it takes one argument (a
    torchvision-style callable such as ``lambda x: x * 2``). ``x``: (N, C, H, W).

    Args:
        transforms: a sequence of callables.
    """

    def __init__(self, transforms: Sequence[BatchTransform]):
        if isinstance(transforms, str) or not isinstance(transforms, Sequence):
            raise TypeError(
                f"Compose: expected a list of transforms, got {type(transforms).__name__}"
            )
        for k, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"Compose: transform {k} ({t!r}) is not callable")
        self.transforms = list(transforms)
        self._with_rng = [_takes_rng(t) for t in self.transforms]

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``x`` through every transform; ``rng`` None: minires' global generator."""
        if any(self._with_rng):
            rng = _rng_or_global(rng)
        for t, with_rng in zip(self.transforms, self._with_rng):
            x = t(x, rng) if with_rng else t(x)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class ToFloat:
    """Integer pixels -> float32 times ``scale`` (uint8 CIFAR: ``scale=1/255`` gives [0, 1];
    torchvision's ``ToTensor`` scaling, on batches already laid out (N, C, H, W))."""

    def __init__(self, scale: float = 1.0 / 255):
        if isinstance(scale, bool) or not isinstance(scale, int | float | np.number):
            raise TypeError(f"ToFloat: scale must be a number, got {scale!r}")
        self.scale = scale

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, ...) any numeric dtype -> (N, ...) float32."""
        from minires.tensor import Tensor

        if isinstance(x, Tensor):
            return Tensor(x.data.astype(np.float32) * np.float32(self.scale))
        return np.asarray(x).astype(np.float32) * np.float32(self.scale)

    def __repr__(self) -> str:
        return f"ToFloat(scale={self.scale:.6g})"


class Cast:
    """``x.astype(dtype)`` — e.g. float64 batches for a float64 model (``--dtype``)."""

    def __init__(self, dtype: str | np.dtype = np.float32):
        self.dtype = np.dtype(dtype)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, ...) -> (N, ...) of ``dtype``."""
        return x.astype(self.dtype, copy=False)

    def __repr__(self) -> str:
        return f"Cast({self.dtype.name})"


def _channel_stats(values: Any, name: str) -> np.ndarray:
    """``values`` (a number, a sequence of numbers, or a 1-D array / Tensor) as (K, 1, 1)."""
    from minires.tensor import Tensor

    try:
        a = np.asarray(values.data if isinstance(values, Tensor) else values)
    except ValueError:  # a ragged nesting
        a = np.asarray(None)
    if a.dtype.kind not in "biuf" or a.ndim > 1:
        raise TypeError(
            f"Normalize: {name} must be a number or a sequence of numbers (one per channel), "
            f"got {values!r}"
        )
    if a.size == 0:
        raise ValueError(f"Normalize: {name} is empty")
    return a.astype(np.float64).reshape(-1, 1, 1)


class Normalize:
    """Per-channel ``(x - mean[c]) / std[c]`` on a float batch (N, C, H, W), as
    torchvision's ``Normalize`` (which also takes single images; minires' transforms
    take batches).

    Args:
        mean, std: one value per channel, or one value for all; same length (or one of
            them of length 1).
        inplace: overwrite ``x`` (a float ndarray or Tensor) instead of making a copy.

    The output has the input's float dtype (float32 stays float32, float64 stays
    float64). An integer batch is a TypeError, as in torchvision (``ToFloat`` first); a
    std of 0 a ValueError (division by zero), negative stds too.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean = _channel_stats(mean, "mean")
        self.std = _channel_stats(std, "std")
        if not np.all(np.isfinite(self.mean)) or not np.all(np.isfinite(self.std)):
            raise ValueError(
                f"Normalize: mean and std must be finite, got {self.mean.ravel().tolist()}, "
                f"{self.std.ravel().tolist()}"
            )
        if np.any(self.std == 0):
            raise ValueError(
                f"Normalize: std evaluated to zero, leading to division by zero "
                f"(std={self.std.ravel().tolist()})"
            )
        if np.any(self.std < 0):
            raise ValueError(f"Normalize: std must be positive, got {self.std.ravel().tolist()}")
        if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
            raise ValueError(
                f"Normalize: mean has {len(self.mean)} values and std {len(self.std)}; give "
                "one value per channel for both"
            )
        self.inplace = bool(inplace)

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, C, H, W) float -> (N, C, H, W) of the same dtype."""
        a, is_tensor = _batch_in(x, "Normalize")
        c = a.shape[1]
        for name, stat in (("mean", self.mean), ("std", self.std)):
            if len(stat) not in (1, c):
                raise ValueError(
                    f"Normalize: {len(stat)} channel stats in {name} for {c} channels "
                    f"(input shape {a.shape})"
                )
        if a.dtype.kind != "f":
            raise TypeError(
                f"Normalize: input should be a float batch, got {a.dtype} (apply ToFloat() "
                "or Cast() first)"
            )
        mean, std = self.mean.astype(a.dtype), self.std.astype(a.dtype)
        if self.inplace:
            if not a.flags.writeable:
                raise ValueError("Normalize(inplace=True): the input array is read-only")
            a -= mean
            a /= std
            return x
        return _batch_out((a - mean) / std, is_tensor)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()}" + (
            ", inplace=True)" if self.inplace else ")"
        )


def _pair(value: Any, name: str, who: str) -> tuple[int, int]:
    """An int or a sequence of one or two ints as (h, w), each >= 1."""
    if _is_int(value):
        hw = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) in (1, 2) and all(map(_is_int, value)):
        hw = (int(value[0]), int(value[-1]))
    else:
        raise TypeError(f"{who}: {name} must be an int or a sequence (h, w) of ints, got {value!r}")
    if min(hw) < 1:
        raise ValueError(f"{who}: {name} must be positive, got {value!r}")
    return hw


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


_PAD_MODES = ("constant", "edge", "reflect", "symmetric")


class RandomCrop:
    """Pad every image by ``padding``, then cut a random ``size`` window from each (its own
    offset per image), as torchvision's ``RandomCrop`` — the CIFAR recipe of He et al. is
    ``RandomCrop(32, padding=4)``. (N, C, H, W) -> (N, C, h, w), same dtype.

    Args:
        size: the crop, an int (square) or (h, w).
        padding: None/0, an int (all sides), (left/right, top/bottom) or (left, top,
            right, bottom), as torchvision.
        pad_if_needed: pad images smaller than ``size`` up to it (after ``padding``).
        fill: the value of the ``"constant"`` padding.
        padding_mode: ``"constant"``, ``"edge"``, ``"reflect"`` or ``"symmetric"``.

    Vectorised: the padded batch is viewed as all its (h, w) windows (a strided view, no
    copy) and one fancy-index picks each image's window.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        padding: int | Sequence[int] | None = None,
        pad_if_needed: bool = False,
        fill: float = 0,
        padding_mode: str = "constant",
    ):
        self.size = _pair(size, "size", "RandomCrop")
        if padding is None:
            pad = (0, 0, 0, 0)
        elif _is_int(padding):
            pad = (int(padding),) * 4
        elif (
            isinstance(padding, Sequence) and len(padding) in (2, 4) and all(map(_is_int, padding))
        ):
            pad = tuple(int(p) for p in (padding * 2 if len(padding) == 2 else padding))
        else:
            raise TypeError(
                "RandomCrop: padding must be None, an int, or a sequence of 2 or 4 ints, "
                f"got {padding!r}"
            )
        if min(pad) < 0:
            raise ValueError(f"RandomCrop: padding must be >= 0, got {padding}")
        self.pad = pad  # (left, top, right, bottom)
        self.padding = padding if padding is not None else 0
        if isinstance(fill, bool) or not isinstance(fill, int | float | np.number):
            raise TypeError(f"RandomCrop: fill must be a number, got {fill!r}")
        if padding_mode not in _PAD_MODES:
            raise ValueError(
                f"RandomCrop: padding_mode must be one of {_PAD_MODES}, got {padding_mode!r}"
            )
        self.pad_if_needed, self.fill, self.padding_mode = bool(pad_if_needed), fill, padding_mode

    def _pad(self, x: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
        if not (left or top or right or bottom):
            return x
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        if self.padding_mode == "constant":
            return np.pad(x, widths, constant_values=np.asarray(self.fill).astype(x.dtype))
        try:
            return np.pad(x, widths, mode=self.padding_mode)
        except ValueError as exc:
            raise ValueError(
                f"RandomCrop: cannot pad images {x.shape[2:]} by {widths[2:]} in "
                f"{self.padding_mode!r} mode: {exc}"
            ) from None

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(N, C, H, W) -> (N, C, h, w); ``rng`` None: minires' global generator."""
        x, is_tensor = _batch_in(x, "RandomCrop")
        rng = _rng_or_global(rng)
        n = x.shape[0]
        ch, cw = self.size
        padded = self._pad(x, *self.pad)
        if self.pad_if_needed:
            ph, pw = padded.shape[2:]
            dh, dw = max(ch - ph, 0), max(cw - pw, 0)
            padded = self._pad(padded, dw, dh, dw, dh)
        ph, pw = padded.shape[2:]
        if ch > ph or cw > pw:
            raise ValueError(
                f"RandomCrop: required crop size {self.size} is larger than the padded image "
                f"size {(ph, pw)} (input {x.shape[2:]})"
            )
        top = rng.integers(0, ph - ch + 1, size=n)
        left = rng.integers(0, pw - cw + 1, size=n)
        windows = sliding_window_view(
            padded, (ch, cw), axis=(2, 3)
        )  # (N, C, ph-ch+1, pw-cw+1, ch, cw)
        out = np.ascontiguousarray(windows[np.arange(n), :, top, left])  # (N, C, ch, cw)
        return _batch_out(out, is_tensor)

    def __repr__(self) -> str:
        extra = "" if self.padding_mode == "constant" else f", padding_mode={self.padding_mode!r}"
        extra += ", pad_if_needed=True" if self.pad_if_needed else ""
        return f"RandomCrop(size={self.size}, padding={self.padding}{extra})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, as torchvision's (not for
    digits: a mirrored 2 is not a 2). (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, p: float = 0.5):
        if isinstance(p, bool) or not isinstance(p, int | float | np.number):
            raise TypeError(f"RandomHorizontalFlip: p must be a number, got {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """``rng`` None: minires' global generator."""
        x, is_tensor = _batch_in(x, "RandomHorizontalFlip")
        flip = _rng_or_global(rng).random(len(x)) < self.p
        out = x.copy()
        out[flip] = x[flip, :, :, ::-1]
        return _batch_out(out, is_tensor)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"

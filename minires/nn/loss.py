"""Loss modules with PyTorch's names: ``nn.CrossEntropyLoss``, ``nn.NLLLoss``,
``nn.BCELoss``, ``nn.BCEWithLogitsLoss`` and ``nn.MSELoss``. Called as
``criterion(prediction, target)``."""

from __future__ import annotations

import numpy as np

from minires import functional as F
from minires.functional._util import check_int
from minires.functional.loss import _check_reduction
from minires.nn.module import Module
from minires.tensor import Tensor


class CrossEntropyLoss(Module):
    """`F.cross_entropy` as a module: logits (N, C) or (N, C, d1, ..., dK) against integer
    class indices (N,) / (N, d1, ..., dK) or class probabilities of the logits' shape ->
    a 0-d loss ("mean", "sum") or one loss per prediction ("none").

    ``label_smoothing`` in [0, 1]; keyword-only, as in `F.cross_entropy`: ``weight`` (C,)
    per-class weights (kept as the buffer ``weight``, in the state_dict, as PyTorch) and
    ``ignore_index`` (default -100: targets equal to it are skipped).
    """

    def __init__(
        self,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        weight: Tensor | np.ndarray | None = None,
        ignore_index: int = -100,
    ):
        super().__init__()
        op = "CrossEntropyLoss"
        self.reduction = _check_reduction(reduction, op)
        if isinstance(label_smoothing, bool) or not isinstance(
            label_smoothing, int | float | np.integer | np.floating
        ):
            raise TypeError(f"{op}: label_smoothing must be a number, got {label_smoothing!r}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}"
            )
        self.label_smoothing = label_smoothing
        self.ignore_index = check_int(ignore_index, "ignore_index", op)
        if weight is not None:
            w = np.array(weight.data if isinstance(weight, Tensor) else weight)  # a copy
            if w.ndim != 1 or w.dtype.kind not in "fiu":
                raise TypeError(
                    f"{op}: weight must be a 1-D array of per-class weights, got {w.dtype} "
                    f"of shape {w.shape}"
                )
            weight = w if w.dtype.kind == "f" else w.astype(np.float32)
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.cross_entropy(
            input,
            target,
            self.reduction,
            self.label_smoothing,
            weight=self.weight,
            ignore_index=self.ignore_index,
        )

    def extra_repr(self) -> str:
        s = f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
        return s if self.ignore_index == -100 else s + f", ignore_index={self.ignore_index}"


class MSELoss(Module):
    """`F.mse_loss` as a module: mean (or "sum", "none") of (input - target)^2."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction, "MSELoss")

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.mse_loss(input, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def _weight_buffer(weight: Tensor | np.ndarray | None, name: str, op: str) -> np.ndarray | None:
    """A loss module's ``weight`` / ``pos_weight`` as its own float array (a copy: the
    module's buffer, in the state_dict as in PyTorch), or None. Its shape is checked
    against the input at each call."""
    if weight is None:
        return None
    if isinstance(weight, str):
        raise TypeError(
            f"{op}: {name} must be a Tensor, an array or None, got the string {weight!r}; "
            f"give the reduction by keyword: reduction={weight!r}"
        )
    w = np.array(weight.data if isinstance(weight, Tensor) else weight)  # a copy
    if w.dtype.kind not in "fiu":
        raise TypeError(f"{op}: {name} must hold real numbers, got {w.dtype}")
    return w if w.dtype.kind == "f" else w.astype(np.float32)


class NLLLoss(Module):
    """`F.nll_loss` as a module: log-probabilities (N, C) or (N, C, d1, ..., dK) (e.g. from
    ``nn.LogSoftmax(dim=1)``) against integer class indices (N,) / (N, d1, ..., dK) -> a
    0-d loss ("mean", "sum") or one loss per prediction ("none").

    ``weight`` (C,): per-class weights (kept as the buffer ``weight``, as PyTorch);
    keyword-only: ``ignore_index`` (default -100: targets equal to it are skipped) and
    ``reduction`` ("mean" divides by the summed weight of the targets kept).
    """

    def __init__(
        self,
        weight: Tensor | np.ndarray | None = None,
        *,
        ignore_index: int = -100,
        reduction: str = "mean",
    ):
        super().__init__()
        op = "NLLLoss"
        w = _weight_buffer(weight, "weight", op)
        if w is not None and w.ndim != 1:
            raise ValueError(f"{op}: weight must be 1-D, one entry per class, got shape {w.shape}")
        self.register_buffer("weight", w)
        self.ignore_index = check_int(ignore_index, "ignore_index", op)
        self.reduction = _check_reduction(reduction, op, "")

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.nll_loss(
            input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction
        )


class BCELoss(Module):
    """`F.binary_cross_entropy` as a module: probabilities in [0, 1] (e.g. from
    ``nn.Sigmoid``) against targets of the same shape, each log clamped at -100.
    ``weight`` broadcasts to the input (the buffer ``weight``); ``reduction`` keyword-only.
    Prefer `BCEWithLogitsLoss` on logits."""

    def __init__(self, weight: Tensor | np.ndarray | None = None, *, reduction: str = "mean"):
        super().__init__()
        self.register_buffer("weight", _weight_buffer(weight, "weight", "BCELoss"))
        self.reduction = _check_reduction(reduction, "BCELoss", "")

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(Module):
    """`F.binary_cross_entropy_with_logits` as a module: logits against targets in [0, 1]
    of the same shape, computed without overflow for large logits. ``weight`` and
    ``pos_weight`` (the weight of positive examples, e.g. one per class) broadcast to the
    input and are kept as buffers, as PyTorch; ``reduction`` and ``pos_weight`` are
    keyword-only."""

    def __init__(
        self,
        weight: Tensor | np.ndarray | None = None,
        *,
        reduction: str = "mean",
        pos_weight: Tensor | np.ndarray | None = None,
    ):
        super().__init__()
        op = "BCEWithLogitsLoss"
        self.register_buffer("weight", _weight_buffer(weight, "weight", op))
        self.register_buffer("pos_weight", _weight_buffer(pos_weight, "pos_weight", op))
        self.reduction = _check_reduction(reduction, op, "")

    def forward(self, input: Tensor, target: Tensor | np.ndarray) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy_with_logits(
            input, target, self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )

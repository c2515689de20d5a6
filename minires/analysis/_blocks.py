"""Shared machinery of the analysis tools: find the blocks of a model, record what flows
into and out of each one, and linearise a single block into its two branches.

A *block* is any module with a ``residual(x)`` method and a ``has_skip`` attribute
(`minires.models.BasicBlock`, `Bottleneck`, their plain twins, or a block you write):
its ``forward`` must call ``self.residual(x)`` and, if it has a skip, ``self.shortcut(x)``.
The tools never re-implement a block's forward: they temporarily replace ``residual`` /
``shortcut`` / ``forward`` *on the instance* and call the block's own code, so whatever the
block does after the add (a ReLU in the post-activation ResNet, nothing in a
pre-activation one) is respected, and so is what it does before the split: a
pre-activation unit with a projection shortcut calls both on ``preactivate(x)``, and the
vector-Jacobian products of each path still reach the block input through it.

Block boundaries are numbered like activations: boundary ``k`` is the input of block
``k`` (``a^k``), boundary ``n`` the output of the last block, for ``n`` blocks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from minires import functional as F
from minires.nn.module import Module
from minires.tensor import Tensor


def is_block(module: Any) -> bool:
    """True for residual and plain blocks (anything with ``residual()`` and ``has_skip``)."""
    return callable(getattr(module, "residual", None)) and hasattr(module, "has_skip")


def find_blocks(model: Module) -> list[tuple[str, Module]]:
    """``(dotted_name, block)`` for every block of ``model`` in definition order.

    Blocks nested inside blocks are not listed (a block is a leaf of this view). For
    torchvision-style models the order is the forward order: layer1.0, layer1.1, ...
    A model that *is* a block gives ``[("", model)]``.
    """
    found: list[tuple[str, Module]] = []
    stack: list[tuple[str, Module]] = [("", model)]
    while stack:
        name, mod = stack.pop()
        if is_block(mod):
            found.append((name, mod))
            continue
        children = [(f"{name}.{k}" if name else k, m) for k, m in mod.named_children()]
        stack.extend(reversed(children))
    return found


def has_parameters(module: Module | None) -> bool:
    """Whether ``module`` owns any parameter (False for None / option-A shortcuts)."""
    return module is not None and any(True for _ in module.parameters())


def shortcut_module(block: Module) -> Module | None:
    """The module on a block's skip path, None for the identity: torchvision's
    ``downsample``, or ``shortcut`` when that is a sub-module (the pre-activation units,
    where ``nn.Identity`` stands for the identity)."""
    from minires.nn import Identity

    ds = getattr(block, "downsample", None)
    if ds is None and isinstance(getattr(block, "shortcut", None), Module):
        ds = block.shortcut
    return None if isinstance(ds, Identity) else ds


def shortcut_kind(block: Module) -> str:
    """``"identity"``, ``"option A"`` (parameter-free subsample + zero pad),
    ``"projection"`` (1x1 conv, with BN in torchvision's nets) or ``"none"`` (plain
    block)."""
    if not block.has_skip:
        return "none"
    ds = shortcut_module(block)
    if ds is None:
        return "identity"
    return "projection" if has_parameters(ds) else "option A"


# -------------------------------------------------------------------------------------
# Leaving the model as it was
# -------------------------------------------------------------------------------------


@contextlib.contextmanager
def preserved(model: Module) -> Iterator[None]:
    """Restore buffers (batchnorm running statistics), ``requires_grad`` flags, the
    train/eval mode and the parameters' ``.grad`` after the block: extra forward passes
    made for analysis must not change the model."""
    state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        model.load_state_dict(state)
        for p, flag, grad in flags:
            p.requires_grad = flag
            p.grad = grad
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


@contextlib.contextmanager
def patched(obj: Module, **methods: Callable[..., Any]) -> Iterator[None]:
    """Temporarily replace methods on one instance (``forward``, ``residual``, ...).

    What the instance held under those names is put back afterwards: a block's
    ``shortcut`` may be a sub-module stored on the instance (the pre-activation units),
    not a method of its class."""
    missing = object()
    saved = {name: obj.__dict__.get(name, missing) for name in methods}
    for name, fn in methods.items():
        object.__setattr__(obj, name, fn)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is missing:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, old)


@contextlib.contextmanager
def out_of_place(module: Module) -> Iterator[None]:
    """Run ``module``'s in-place activations (``nn.ReLU(inplace=True)``, ...) out of
    place for the duration: the analyses cut a block's branches into leaves that require
    grad, which an in-place ReLU after them may not overwrite (PyTorch refuses it too)."""
    mods = [m for m in module.modules() if getattr(m, "inplace", False) is True]
    for m in mods:
        m.inplace = False
    try:
        yield
    finally:
        for m in mods:
            m.inplace = True


@contextlib.contextmanager
def patched_many(patches: Sequence[tuple[Module, dict[str, Callable[..., Any]]]]) -> Iterator[None]:
    """`patched` for several instances at once."""
    with contextlib.ExitStack() as stack:
        for obj, methods in patches:
            stack.enter_context(patched(obj, **methods))
        yield


# -------------------------------------------------------------------------------------
# Recording the boundaries during a real forward/backward
# -------------------------------------------------------------------------------------


@dataclass
class Recording:
    """What one forward (and later backward) of the model passed through its blocks.

    ``inputs[k]`` / ``outputs[k]`` are the Tensors entering / leaving block ``k`` in call
    order; after ``loss.backward()`` their ``.grad`` holds d loss / d activation (they are
    non-leaf tensors with `Tensor.retain_grad` switched on).
    """

    names: list[str]
    blocks: list[Module]
    inputs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    order: list[int] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.order)

    def boundary(self, k: int) -> Tensor:
        """The activation at boundary ``k`` (0 = input of the first block called)."""
        return self.inputs[k] if k < self.n else self.outputs[self.n - 1]

    def boundary_grad(self, k: int) -> np.ndarray:
        """d loss / d a^k from the backward pass (zeros if nothing reached it)."""
        t = self.boundary(k)
        return np.zeros_like(t.data) if t.grad is None else t.grad

    def called_blocks(self) -> list[tuple[str, Module]]:
        """``(name, block)`` in the order the forward called them."""
        return [(self.names[i], self.blocks[i]) for i in self.order]

    def check_chained(self, l1: int, l2: int) -> None:
        """Raise unless blocks ``l1 .. l2-1`` feed each other directly."""
        for k in range(l1 + 1, l2):
            if self.inputs[k] is not self.outputs[k - 1]:
                raise ValueError(
                    f"blocks {self.called_blocks()[k - 1][0]!r} and {self.called_blocks()[k][0]!r} "
                    "are not directly chained (something runs between them), so boundaries "
                    f"{l1}..{l2} do not form a residual stack"
                )


@contextlib.contextmanager
def recording(model: Module) -> Iterator[Recording]:
    """Run the model's own block forwards, keeping each block's input and output Tensor
    and retaining their gradients."""
    blocks = find_blocks(model)
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no blocks (modules with residual() and has_skip)"
        )
    rec = Recording(names=[n for n, _ in blocks], blocks=[b for _, b in blocks])

    def make(i: int, block: Module) -> Callable[[Tensor], Tensor]:
        original = type(block).forward

        def forward(x: Tensor) -> Tensor:
            if x.requires_grad:
                x.retain_grad()
            out = original(block, x)
            if out.requires_grad:
                out.retain_grad()
            rec.inputs.append(x)
            rec.outputs.append(out)
            rec.order.append(i)
            return out

        return forward

    with patched_many([(b, {"forward": make(i, b)}) for i, b in enumerate(rec.blocks)]):
        yield rec


def as_input(x: Any) -> Tensor:
    """The model input as a Tensor that requires grad (so boundary 0 of a bare stack of
    blocks has a gradient too)."""
    data = x.data if isinstance(x, Tensor) else np.asarray(x)
    return Tensor(np.array(data, copy=True), requires_grad=True)


def default_loss(output: Tensor, target: Any) -> Tensor:
    """Cross-entropy for integer targets (a classifier); for ``target=None`` the fixed
    random projection ``sum(output * r)`` (r seeded), so a bare stack of blocks has a
    scalar to differentiate."""
    if target is None:
        r = np.random.default_rng(1234).standard_normal(output.shape).astype(output.dtype)
        return (output * Tensor(r)).sum()
    return F.cross_entropy(output, target)


# -------------------------------------------------------------------------------------
# One block, linearised around its input: vector-Jacobian products per branch
# -------------------------------------------------------------------------------------


class BlockLinearisation:
    """A block re-run on a detached copy of its input, so gradients can be pushed back
    through its residual branch and its shortcut *separately*.

    ``vjp(v)`` -> ``(through_residual, through_shortcut)``, both shaped like the input,
    with ``through_residual + through_shortcut`` = the block's full vector-Jacobian
    product ``v^T d out / d x``. The block's own forward decides what happens after the
    add (the post-add ReLU mask is included automatically).

    Parameters should have ``requires_grad=False`` while this is used (the caller freezes
    them) so no weight gradients are computed; batchnorm uses the mode the model is in,
    and the same batch, so the linearisation is exact.
    """

    def __init__(self, block: Module, x: np.ndarray):
        self.block = block
        self.x = Tensor(np.array(x, copy=True), requires_grad=True)
        self.r: Tensor | None = None
        self.s: Tensor | None = None
        self.r_leaf: Tensor | None = None
        self.s_leaf: Tensor | None = None
        residual, shortcut = block.residual, getattr(block, "shortcut", None)

        def cut_residual(x: Tensor) -> Tensor:
            self.r = residual(x)
            self.r_leaf = Tensor(self.r.data, requires_grad=True)
            return self.r_leaf

        def cut_shortcut(x: Tensor) -> Tensor:
            self.s = shortcut(x)
            self.s_leaf = Tensor(self.s.data, requires_grad=True)
            return self.s_leaf

        methods: dict[str, Callable[..., Any]] = {"residual": cut_residual}
        if shortcut is not None:
            methods["shortcut"] = cut_shortcut
        with patched(block, **methods), out_of_place(block):
            self.out = type(block).forward(block, self.x)
        if self.r is None:
            raise ValueError(
                f"{type(block).__name__}.forward did not call self.residual(x): the analysis "
                "tools need forward(x) to be built from residual(x) (and shortcut(x))"
            )
        if block.has_skip and self.s is None:
            raise ValueError(
                f"{type(block).__name__} has has_skip=True but its forward did not call "
                "self.shortcut(x)"
            )

    def vjp(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Push ``v`` (d loss / d output, the output's shape) back to the input through
        each branch: returns ``(via F, via the shortcut)``."""
        self._through_add(v)
        return self._pull(self.r, self.r_leaf), self._pull(self.s, self.s_leaf)

    def vjp_residual(self, v: np.ndarray) -> np.ndarray:
        """``v`` pushed back through the residual branch only (the post-add op included)."""
        self._through_add(v)
        return self._pull(self.r, self.r_leaf)

    def vjp_shortcut(self, v: np.ndarray) -> np.ndarray:
        """``v`` pushed back through the shortcut only (zeros for a plain block)."""
        self._through_add(v)
        return self._pull(self.s, self.s_leaf)

    def _through_add(self, v: np.ndarray) -> None:
        # d out / d r and d out / d s: the add and whatever follows it (the ReLU mask)
        for t in (self.r_leaf, self.s_leaf):
            if t is not None:
                t.grad = None
        self.out.backward(v, retain_graph=True)

    def _pull(self, branch_out: Tensor | None, leaf: Tensor | None) -> np.ndarray:
        # forward ignored this branch (e.g. a plain block's shortcut): no gradient
        if branch_out is None or leaf is None or leaf.grad is None:
            return np.zeros_like(self.x.data)
        if branch_out is self.x:  # identity shortcut: the gradient passes unchanged
            return np.array(leaf.grad, copy=True)
        if not branch_out.requires_grad:
            return np.zeros_like(self.x.data)
        self.x.grad = None
        branch_out.backward(leaf.grad, retain_graph=True)
        return np.zeros_like(self.x.data) if self.x.grad is None else self.x.grad.copy()


def frozen(model: Module) -> contextlib.AbstractContextManager[None]:
    """Context: parameters do not require grad (restored by `preserved`)."""

    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        flags = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in flags:
            p.requires_grad = False
        try:
            yield
        finally:
            for p, f in flags:
                p.requires_grad = f

    return ctx()


def norm(a: np.ndarray) -> float:
    """Euclidean norm of all elements, as a Python float."""
    return float(np.sqrt(np.sum(np.square(a, dtype=np.float64))))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two arrays seen as vectors (nan if one is zero)."""
    na, nb = norm(a), norm(b)
    if na == 0 or nb == 0:
        return float("nan")
    return float(np.sum(a.astype(np.float64) * b) / (na * nb))

"""The autograd engine: `Function` (a forward/backward pair on ndarrays), the graph
node it leaves behind, `no_grad`, and the iterative backward walk.

How it fits together
--------------------
``MyOp.apply(a, b)`` runs ``MyOp.forward(ctx, a.data, b.data)`` on plain ndarrays and
wraps the result in a Tensor whose ``grad_fn`` is a `Node`. The node remembers the
Function, its context (whatever forward saved) and the input tensors *in order*.
``loss.backward()`` sorts the nodes reachable from ``loss`` topologically (with an
explicit stack, so a 1,000-block net cannot hit Python's recursion limit) and calls
each node's ``backward`` once all the gradient arriving at its output has been summed:
a value used twice - the input of a residual block feeds both the identity and the
residual branch - receives the *sum* of both gradients.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from minires.tensor import Tensor

_grad_enabled = True


def is_grad_enabled() -> bool:
    """True unless inside `no_grad()`."""
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Context manager (and decorator) that stops graph recording, like ``torch.no_grad``.

    Inside it ops compute values only: no nodes, no saved buffers.
    """

    def __enter__(self) -> no_grad:
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self._prev


class enable_grad(contextlib.ContextDecorator):
    """Re-enables graph recording inside a `no_grad` block."""

    def __enter__(self) -> enable_grad:
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = True
        return self

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self._prev


class Context:
    """What a Function's forward hands to its backward.

    ``ctx.save_for_backward(*arrays)`` stores arrays, read back as ``ctx.saved_tensors``;
    ``ctx.needs_input_grad[i]`` says whether input ``i`` wants a gradient (conv uses it to
    skip the input gradient of the first layer). Any other attribute may be set freely.
    """

    def __init__(self, needs_input_grad: tuple[bool, ...]):
        self.needs_input_grad = needs_input_grad
        self._saved: tuple[Any, ...] | None = ()
        self._freed = False

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` (ndarrays or anything else) for the backward pass."""
        self._saved = values

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        """The values given to `save_for_backward`, in order."""
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved buffers were "
                "freed after the first backward. Call .backward(retain_graph=True) the first "
                "time if you need to backward twice."
            )
        return self._saved  # type: ignore[return-value]

    def _free(self) -> None:
        # Drop what forward saved (and any attributes it set) so memory is returned.
        extra = [k for k in self.__dict__ if k not in ("needs_input_grad", "_saved", "_freed")]
        for k in extra:
            delattr(self, k)
        self._saved = None
        self._freed = True


class Node:
    """One recorded op in the graph: the Function, its context, and its inputs in order.

    ``inputs[i]`` is the Tensor given as positional argument ``i`` if it requires grad,
    else None. Hooks and ``retain_grad`` of the non-leaf tensor this node produced live
    here, so the tensor itself is not kept alive by the graph.
    """

    __slots__ = ("fn", "ctx", "inputs", "hooks", "retained", "freed", "__weakref__")

    def __init__(self, fn: type[Function], ctx: Context, inputs: list[Tensor | None]):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.hooks: list[Callable[[np.ndarray], np.ndarray | None]] = []
        self.retained: weakref.ReferenceType[Tensor] | None = None
        self.freed = False

    def name(self) -> str:
        """The op's name, e.g. ``'Conv2d'``, for error messages and graph printing."""
        return self.fn.__name__

    def __repr__(self) -> str:
        return f"<{self.name()}Backward>"


class Function:
    """Base class of every differentiable op: subclass it with two static methods.

    Example::

        class Square(mr.Function):
            @staticmethod
            def forward(ctx, x):            # x: ndarray
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad_out):    # grad_out: ndarray of the output's shape
                (x,) = ctx.saved_tensors
                return 2 * x * grad_out     # one gradient per forward input

        y = Square.apply(t)

    ``forward`` receives ndarrays where ``apply`` got Tensors, and every other argument
    (ints, tuples, ndarrays that are not differentiable) unchanged. ``backward`` returns
    one gradient per positional input (a single value if there is one input); None means
    "no gradient" (e.g. for a stride argument).
    """

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray) -> Any:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor:
        """Run the op on Tensors and record it in the graph when a gradient is needed."""
        from minires.tensor import Tensor

        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = _grad_enabled and any(needs)
        ctx = Context(needs if record else (False,) * len(args))
        raw = [a.data if isinstance(a, Tensor) else a for a in args]
        out = cls.forward(ctx, *raw, **kwargs)
        if isinstance(out, tuple):
            raise TypeError(f"{cls.__name__}.forward must return one ndarray, got a tuple")
        out = np.asarray(out)
        if not record:
            return Tensor._wrap(out)
        inputs = [a if need else None for a, need in zip(args, needs)]
        return Tensor._wrap(out, grad_fn=Node(cls, ctx, inputs))


# ---------------------------------------------------------------------------------------
# The backward walk
# ---------------------------------------------------------------------------------------


def _topological_order(root: Node) -> list[Node]:
    """Nodes reachable from ``root``, each after every node that consumes its output.

    Iterative depth-first search (explicit stack): deep nets must not recurse.
    """
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            if t is not None and t.grad_fn is not None and id(t.grad_fn) not in visited:
                stack.append((t.grad_fn, False))
    order.reverse()  # root first: a node comes before all of its inputs' nodes
    return order


def _as_grad(g: Any, like: np.ndarray, where: str) -> np.ndarray:
    """Check a gradient's shape against the value it belongs to and cast its dtype."""
    g = np.asarray(g)
    if g.shape != like.shape:
        if g.size == like.size and g.ndim == 0:
            g = np.broadcast_to(g, like.shape)
        else:
            raise ValueError(
                f"{where}: gradient of shape {g.shape} does not match the value's shape "
                f"{like.shape}"
            )
    return g.astype(like.dtype, copy=False)


def _run_hooks(hooks: list[Callable], grad: np.ndarray) -> np.ndarray:
    for hook in hooks:
        new = hook(grad)
        if new is not None:
            grad = np.asarray(new)
    return grad


def backward(root: Tensor, grad: np.ndarray, retain_graph: bool = False) -> None:
    """Propagate ``grad`` (d loss / d root) to every leaf that requires grad.

    Leaves accumulate into ``.grad`` (as in PyTorch); non-leaf tensors do too when
    `Tensor.retain_grad` was called on them. Unless ``retain_graph`` is true, each
    node's saved buffers are freed once its backward has run.
    """
    if root.grad_fn is None:
        # The root is itself a leaf: its gradient is just the seed.
        root._accumulate(_run_hooks(root._hooks, grad))
        return
    order = _topological_order(root.grad_fn)
    pending: dict[int, np.ndarray] = {id(root.grad_fn): grad}
    for node in order:
        g_out = pending.pop(id(node), None)
        if g_out is None:  # no gradient reached this node (e.g. only non-grad paths)
            continue
        if node.freed:
            raise RuntimeError(
                f"Trying to backward through the graph a second time (op {node.name()}): "
                "its saved buffers were freed after the first backward. Call "
                ".backward(retain_graph=True) the first time if you need to backward twice."
            )
        g_out = _run_hooks(node.hooks, g_out)
        if node.retained is not None:
            kept = node.retained()
            if kept is not None:
                kept._accumulate(g_out)
        grads = node.fn.backward(node.ctx, g_out)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) < len(node.inputs):
            raise ValueError(
                f"{node.name()}.backward returned {len(grads)} gradient(s) for "
                f"{len(node.inputs)} input(s)"
            )
        for t, g in zip(node.inputs, grads):
            if t is None or g is None:
                continue
            g = _as_grad(g, t.data, f"{node.name()}.backward")
            if t.grad_fn is None:  # a leaf: hooks, then accumulate into .grad
                t._accumulate(_run_hooks(t._hooks, g))
            else:
                key = id(t.grad_fn)
                pending[key] = pending[key] + g if key in pending else g
        if not retain_graph:
            node.ctx._free()
            node.freed = True


def iter_graph(root: Tensor) -> Iterator[Node]:
    """Yield the nodes of the graph behind ``root``, output first (for printing/teaching)."""
    if root.grad_fn is not None:
        yield from _topological_order(root.grad_fn)

"""The autograd engine: `Function` (a forward/backward pair on ndarrays), the graph
node it leaves behind, `no_grad`, and the iterative backward walk.

How it fits together
--------------------
``MyOp.apply(a, b)`` runs ``MyOp.forward(ctx, a.data, b.data)`` on plain ndarrays and
wraps the result in a Tensor whose ``grad_fn`` is a `Node`. The node remembers the
Function, its context (whatever forward saved) and, per input *in order*, where the
gradient goes: nowhere (None), a leaf Tensor's ``.grad``, or the Node that produced a
non-leaf input. Nodes never hold non-leaf Tensors, so once backward has freed each
context the activations are gone even while ``loss`` is still referenced.
``loss.backward()`` sorts the nodes reachable from ``loss`` topologically (with an
explicit stack, so a 1,000-block net cannot hit Python's recursion limit) and calls
each node's ``backward`` once all the gradient arriving at its output has been summed:
a value used twice - the input of a residual block feeds both the identity and the
residual branch - receives the *sum* of both gradients.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from minires.backend import kernels

if TYPE_CHECKING:  # pragma: no cover
    from minires.tensor import Tensor

# Grad mode lives in a ContextVar, so it is per thread (and per asyncio task), as in
# PyTorch: a `no_grad` block in one thread does not stop recording in another. A new thread
# starts with recording on. `_saved_modes` is the stack of modes the open blocks replaced;
# keeping it in the context too (not on the block object) lets one `no_grad()` instance,
# or a function decorated with it, be entered from several threads at once.
_grad_mode: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "minires_grad_enabled", default=True
)
_saved_modes: contextvars.ContextVar[tuple[bool, ...]] = contextvars.ContextVar(
    "minires_saved_grad_modes", default=()
)


def is_grad_enabled() -> bool:
    """True unless inside `no_grad()` (in this thread)."""
    return _grad_mode.get()


def _push_mode(enabled: bool) -> None:
    _saved_modes.set(_saved_modes.get() + (_grad_mode.get(),))
    _grad_mode.set(enabled)


def _pop_mode() -> None:
    stack = _saved_modes.get()
    _grad_mode.set(stack[-1])
    _saved_modes.set(stack[:-1])


class _ModeDecorator(contextlib.ContextDecorator):
    """A grad-mode context manager that also decorates with or without parentheses
    (``@no_grad()`` and ``@no_grad``), as in PyTorch 2."""

    def __new__(cls, func: Callable | None = None):
        self = super().__new__(cls)
        return self if func is None else self(func)

    def __init__(self, func: Callable | None = None) -> None:
        pass


class no_grad(_ModeDecorator):
    """Context manager (and decorator) that stops graph recording, like ``torch.no_grad``.

    Inside it ops compute values only: no nodes, no saved buffers. The mode is per thread:
    other threads keep recording.
    """

    def __enter__(self) -> no_grad:
        _push_mode(False)
        return self

    def __exit__(self, *exc: object) -> None:
        _pop_mode()


class enable_grad(_ModeDecorator):
    """Re-enables graph recording inside a `no_grad` block (in this thread)."""

    def __enter__(self) -> enable_grad:
        _push_mode(True)
        return self

    def __exit__(self, *exc: object) -> None:
        _pop_mode()


class set_grad_enabled:
    """``set_grad_enabled(False)`` as `no_grad`, ``(True)`` as `enable_grad`: a context
    manager, a decorator, or called alone to set this thread's mode (as PyTorch)."""

    def __init__(self, mode: bool) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled: mode must be a bool, got {mode!r}")
        self._previous = _grad_mode.get()
        self._mode = mode
        _grad_mode.set(mode)  # effective at once: `mr.set_grad_enabled(False)` alone

    def __enter__(self) -> set_grad_enabled:
        return self

    def __exit__(self, *exc: object) -> None:
        _grad_mode.set(self._previous)

    def __call__(self, func: Callable) -> Callable:
        _grad_mode.set(self._previous)  # decorating changes nothing until a call
        mode = self._mode

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(mode):  # the mode of the call, restored after it
                return func(*args, **kwargs)

        return wrapper


# ---------------------------------------------------------------------------------------
# Version counters (PyTorch's ``t._version``)
# ---------------------------------------------------------------------------------------
# An in-place write through minires (``t += 1`` outside the graph, ``t[i] = v``, ``copy_``,
# an optimizer step, ``load_state_dict``) bumps the counter of the memory it writes: the
# base array at the root of the ndarray's ``.base`` chain, so a tensor, its views and
# ``detach()`` share one counter, as in PyTorch. ``save_for_backward`` records the counters
# of the arrays it keeps, and backward refuses an array written since: its gradient would
# be silently wrong. Writes into ``.data`` directly are not seen (as PyTorch's ``.data``).
_versions: dict[int, int] = {}


def _memory_key(array: np.ndarray) -> tuple[int, Any]:
    """(id, object) of the object that owns ``array``'s memory (the end of ``.base``)."""
    owner: Any = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return id(owner), owner


def version_of(array: np.ndarray) -> int:
    """How many in-place writes through minires the memory of ``array`` has had."""
    return _versions.get(_memory_key(array)[0], 0)


def bump_version(array: np.ndarray) -> None:
    """Record an in-place write into ``array``'s memory (see `version_of`)."""
    key, owner = _memory_key(array)
    if key not in _versions:
        # forget the counter with the memory, so a later object with this id starts at 0
        with contextlib.suppress(TypeError):  # owners without weak references: kept
            weakref.finalize(owner, _versions.pop, key, None)
        _versions[key] = 0
    _versions[key] += 1


class Context:
    """What a Function's forward hands to its backward.

    ``ctx.save_for_backward(*arrays)`` stores arrays, read back as ``ctx.saved_tensors``;
    ``ctx.needs_input_grad[i]`` says whether input ``i`` wants a gradient (conv uses it to
    skip the input gradient of the first layer). Any other attribute may be set freely.
    """

    def __init__(self, needs_input_grad: tuple[bool, ...], op: str = "a custom Function"):
        self.needs_input_grad = needs_input_grad
        self._saved: tuple[Any, ...] | None = ()
        self._saved_versions: tuple[tuple[int, int, int], ...] = ()
        self._op = op
        self._freed = False
        self._non_differentiable: set[int] = set()
        self._materialize_grads = True

    def save_for_backward(self, *values: Any) -> None:
        """Keep ``values`` (ndarrays or anything else) for the backward pass; an ndarray
        written in place through minires before backward makes backward refuse it."""
        self._saved = values
        self._saved_versions = tuple(
            (i, key, _versions.get(key, 0))
            for i, v in enumerate(values)
            if isinstance(v, np.ndarray)
            for key in (_memory_key(v)[0],)
        )

    def mark_non_differentiable(self, *outputs: np.ndarray) -> None:
        """Outputs of a multi-output forward (the arrays it returns) that get no gradient,
        as torch's: their Tensors do not require grad, and backward receives zeros (or
        None, see `set_materialize_grads`) for them. Integer outputs never require grad."""
        self._non_differentiable = {id(o) for o in outputs}

    def set_materialize_grads(self, value: bool) -> None:
        """Whether backward receives zeros (the default, as torch) or None for the outputs
        of a multi-output op that no gradient reached."""
        self._materialize_grads = bool(value)

    def kept_for(self, value: Any, *inputs: int) -> Any:
        """``value`` if the gradient of any of the positional ``inputs`` is wanted, else a
        stand-in with its shape and dtype and no data, which backward must not read.

        ``ctx.save_for_backward(ctx.kept_for(a, 1), ctx.kept_for(b, 0))`` in ``a * b``:
        as in PyTorch, an op keeps only what its wanted gradients read, so the other
        operand's memory is not held (a constant mask) and an in-place write into it
        before backward (a frozen weight, the input images) is allowed."""
        if not isinstance(value, np.ndarray) or any(self.needs_input_grad[i] for i in inputs):
            return value
        return np.broadcast_to(np.zeros((), value.dtype), value.shape)

    @property
    def saved_tensors(self) -> tuple[Any, ...]:
        """The values given to `save_for_backward`, in order."""
        if self._freed:
            raise RuntimeError(
                "Trying to backward through the graph a second time: its saved buffers were "
                "freed after the first backward. Call .backward(retain_graph=True) the first "
                "time if you need to backward twice."
            )
        for i, key, saved in self._saved_versions:
            now = _versions.get(key, 0)
            if now != saved:
                v = self._saved[i]  # type: ignore[index]
                raise RuntimeError(
                    "one of the arrays needed for gradient computation has been modified by "
                    f"an in-place operation: saved value {i} of {self._op} ({v.dtype} "
                    f"{tuple(v.shape)}) is at version {now}; expected version {saved}. Do "
                    "the in-place update (an optimizer step, `t += ...`, `t[i] = ...`) after "
                    "backward, or use the out-of-place op."
                )
        return self._saved  # type: ignore[return-value]

    def _free(self) -> None:
        # Drop what forward saved (and any attributes it set) so memory is returned.
        keep = ("needs_input_grad", "_saved", "_saved_versions", "_op", "_freed",
                "_non_differentiable", "_materialize_grads")  # fmt: skip
        extra = [k for k in self.__dict__ if k not in keep]
        for k in extra:
            delattr(self, k)
        self._saved = None
        self._saved_versions = ()
        self._freed = True


class Node:
    """One recorded op in the graph: the Function, its context, where each input's
    gradient goes, and the output's ``shape`` and ``dtype``.

    ``inputs[i]`` is, for positional argument ``i`` of the op (like PyTorch's
    ``next_functions``):

    - None if it needs no gradient (a constant, an int, a tensor without requires_grad);
    - the Tensor itself if it is a leaf (a parameter or a user input): it receives ``.grad``;
    - the Node that produced it if it is a non-leaf tensor.

    A node never holds a non-leaf Tensor, so an activation's memory is owned only by the
    ``ctx`` of the ops that saved it, and is returned when backward frees those. Hooks
    and ``retain_grad`` of the non-leaf tensor this node produced live here for the same
    reason (the retained tensor is held weakly).
    """

    __slots__ = (
        "fn", "ctx", "inputs", "shape", "dtype", "hooks", "retained", "freed", "group",
        "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        fn: type[Function],
        ctx: Context,
        inputs: list[Tensor | Node | None],
        shape: tuple[int, ...],
        dtype: np.dtype,
    ):
        self.fn = fn
        self.ctx = ctx
        self.inputs = inputs
        self.shape = shape
        self.dtype = dtype
        self.hooks: list[Callable[[np.ndarray], np.ndarray | None]] = []
        self.retained: weakref.ReferenceType[Tensor] | None = None
        self.freed = False
        # a multi-output op: one node per differentiable output, sharing ctx and inputs;
        # the tuple of (output index, node) of all of them, or None for one output
        self.group: tuple[tuple[int, Node], ...] | None = None

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
    "no gradient" (e.g. for a stride argument). ``forward`` may return a tuple of arrays
    (several outputs, as torch): ``apply`` then returns a tuple of Tensors and
    ``backward(ctx, *grad_outputs)`` gets one gradient per output (zeros for outputs no
    gradient reached; ``ctx.mark_non_differentiable``, ``ctx.set_materialize_grads``).
    An op whose backward returns arrays it
    allocated and keeps no reference to may set ``fresh_gradients = True``: a parameter
    then keeps such a gradient as its ``.grad`` without a copy.
    """

    # True when ``backward`` returns arrays it allocated and keeps no reference to (not
    # grad_out, not a saved buffer, not a view of either): a leaf without hooks then takes
    # such a gradient as its ``.grad`` without a copy (PyTorch's AccumulateGrad steals an
    # unshared gradient the same way). Saves a copy of every weight gradient a step.
    fresh_gradients: bool = False

    # True for an op whose forward writes into its first input's array and returns it
    # (the in-place ReLU): `Tensor._record_inplace` makes that tensor the output. Any
    # other output sharing memory with a Tensor input is a view, and both are marked so
    # (``_aliased``): an in-place write into either could not be recorded for the other.
    inplace: bool = False

    @staticmethod
    def forward(ctx: Context, *args: Any, **kwargs: Any) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    @staticmethod
    def backward(ctx: Context, grad_output: np.ndarray) -> Any:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
        """Run the op on Tensors and record it in the graph when a gradient is needed."""
        from minires.tensor import Tensor, native_array

        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = _grad_mode.get() and any(needs)
        ctx = Context(needs if record else (False,) * len(args), cls.__name__)
        # The one door to the kernels: Tensors already hold arrays that follow the dtype
        # rules (native-endian float32/float64 or integer/bool); a raw ndarray argument
        # (a batch-norm buffer, an index array) is brought to them here, so no kernel is
        # ever reached with a big-endian, float16, complex or object array.
        raw = [a.data if isinstance(a, Tensor) else _checked(a, cls, i) for i, a in enumerate(args)]
        if kwargs:
            kwargs = {k: _checked(v, cls, k) for k, v in kwargs.items()}
        out = cls.forward(ctx, *raw, **kwargs)
        if isinstance(out, tuple | list):
            return _wrap_outputs(cls, ctx, args, needs, record, out)
        out = native_array(np.asarray(out), f"{cls.__name__}.forward output")
        if not record:
            return Tensor._wrap(out)
        t = Tensor._wrap(out, grad_fn=Node(cls, ctx, _edges(args, needs), out.shape, out.dtype))
        _mark_views(cls, args, (t,))
        return t


def _mark_views(fn: type[Function], args: tuple, outs: tuple[Tensor, ...]) -> None:
    """Mark the recorded outputs that share memory with a Tensor input, and those inputs,
    as ``_aliased`` (`Function.inplace`); a bounds check, no scan of the data."""
    from minires.tensor import Tensor

    for a in args:
        if not isinstance(a, Tensor):
            continue
        for t in outs:
            if fn.inplace and t.data is a.data:
                continue  # the in-place op's own write
            if np.may_share_memory(a.data, t.data):
                a._aliased = t._aliased = True


def _edges(args: tuple, needs: tuple[bool, ...]) -> list[Tensor | Node | None]:
    """Where each input's gradient goes (`Node.inputs`)."""
    return [
        (a if a.grad_fn is None else a.grad_fn) if need else None for a, need in zip(args, needs)
    ]


def _wrap_outputs(
    fn: type[Function], ctx: Context, args: tuple, needs: tuple[bool, ...], record: bool,
    outs: tuple | list,
) -> tuple[Tensor, ...]:  # fmt: skip
    """The Tensors of a forward that returned several arrays: one graph node for each
    differentiable output, all sharing the context and the inputs (`Node.group`)."""
    from minires.tensor import Tensor, native_array

    if not outs:
        raise TypeError(f"{fn.__name__}.forward returned an empty {type(outs).__name__}")
    arrays = []
    for i, o in enumerate(outs):
        if not isinstance(o, np.ndarray | np.generic | int | float):
            raise TypeError(
                f"{fn.__name__}.forward output {i} must be an ndarray, got {type(o).__name__}"
            )
        arrays.append(native_array(np.asarray(o), f"{fn.__name__}.forward output {i}"))
    differentiable = [
        record and a.dtype.kind == "f" and id(o) not in ctx._non_differentiable
        for o, a in zip(outs, arrays)
    ]
    if not any(differentiable):
        return tuple(Tensor._wrap(a) for a in arrays)
    inputs = _edges(args, needs)
    nodes = {
        i: Node(fn, ctx, inputs, a.shape, a.dtype)
        for i, (a, d) in enumerate(zip(arrays, differentiable))
        if d
    }
    group = tuple(nodes.items())
    for node in nodes.values():
        node.group = group
    # every output's shape and dtype, for the zeros of those no gradient reaches
    ctx._output_meta = tuple((a.shape, a.dtype) for a in arrays)
    tensors = tuple(Tensor._wrap(a, grad_fn=nodes.get(i)) for i, a in enumerate(arrays))
    _mark_views(fn, args, tensors)
    return tensors


def _checked(value: Any, fn: type[Function], arg: int | str) -> Any:
    """A raw ndarray argument of an op, brought to the dtype rules (see `native_array`)."""
    if type(value) is not np.ndarray:
        return value
    from minires.tensor import native_array

    return native_array(value, f"{fn.__name__} argument {arg}")


# ---------------------------------------------------------------------------------------
# The backward walk
# ---------------------------------------------------------------------------------------


def _topological_order(*roots: Node) -> list[Node]:
    """Nodes reachable from the ``roots``, each after every node that consumes its output.

    Iterative depth-first search (explicit stack): deep nets must not recurse.
    """
    order: list[Node] = []
    visited: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False) for root in reversed(roots)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for inp in node.inputs:
            if isinstance(inp, Node) and id(inp) not in visited:
                stack.append((inp, False))
    order.reverse()  # root first: a node comes before all of its inputs' nodes
    return order


def as_gradient(g: Any, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    """Check a gradient against the value it belongs to: same shape (a 0-d value is
    broadcast to a one-element shape), a real number dtype (cast to ``dtype``)."""
    if type(g) is np.ndarray and g.dtype == dtype and g.shape == shape:
        return g  # the usual case, kept cheap: this runs for every edge of the graph
    from minires.tensor import Tensor

    if isinstance(g, Tensor):
        g = g.data
    try:
        g = np.asarray(g)
    except Exception as exc:  # e.g. a ragged list
        raise TypeError(f"{where}: cannot use {type(g).__name__} as a gradient ({exc})") from None
    if g.dtype.kind not in "fiub" or g.dtype.itemsize > 8:
        raise TypeError(
            f"{where}: gradient of dtype {g.dtype} is not supported; expected a real {dtype} array"
        )
    if g.shape != shape:
        if g.ndim == 0 and math.prod(shape) == 1:
            g = np.broadcast_to(g, shape)
        else:
            raise ValueError(
                f"{where}: gradient of shape {g.shape} does not match the value's shape {shape}"
            )
    return g.astype(dtype, copy=False)


def _run_hooks(
    hooks: list[Callable], grad: np.ndarray, shape: tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    for hook in hooks:
        new = hook(grad)
        if new is not None:
            name = getattr(hook, "__qualname__", type(hook).__name__)
            grad = as_gradient(new, shape, dtype, f"the value returned by hook {name!r}")
    return grad


def backward(
    root: Tensor,
    grad: np.ndarray,
    retain_graph: bool = False,
    capture: dict[int, np.ndarray | None] | None = None,
) -> None:
    """Propagate ``grad`` (d loss / d root) to every leaf that requires grad.

    Leaves accumulate into ``.grad`` (as in PyTorch); non-leaf tensors do too when
    `Tensor.retain_grad` was called on them. Unless ``retain_graph`` is true, each
    node's saved buffers are freed once its backward has run: with the nodes holding no
    activations themselves (see `Node`), the graph then keeps only metadata.

    ``capture`` (for `grad`): maps ``id()`` of leaf tensors and of the nodes behind
    non-leaf tensors to the gradient summed there so far (None: none yet); with it, the
    gradients are added into ``capture`` and no ``.grad`` anywhere changes.
    """
    _backward([(root, grad)], retain_graph, capture)


def _backward(
    seeds: list[tuple[Tensor, np.ndarray]],
    retain_graph: bool,
    capture: dict[int, np.ndarray | None] | None,
) -> None:
    """`backward` from several roots at once (each with its seed): one walk, so a node
    shared by two roots' graphs runs its backward once, on the sum."""
    pending: dict[int, np.ndarray] = {}
    roots: list[Node] = []
    for root, grad in seeds:
        if root.grad_fn is None:
            # The root is itself a leaf: its gradient is just the seed.
            g = _run_hooks(root._hooks, grad, root.shape, root.dtype)
            if capture is None:
                root._accumulate(g)
            elif id(root) in capture:
                _add_captured(capture, id(root), g)
            continue
        key = id(root.grad_fn)
        if key in pending:
            pending[key] = pending[key] + grad
        else:
            pending[key] = grad
            roots.append(root.grad_fn)
    if not roots:
        return
    order = _topological_order(*roots)
    # leaves with hooks: their gradients summed over every path, hooked once at the end
    hooked: dict[int, tuple[Tensor, np.ndarray]] = {}
    # multi-output ops: how many of their nodes are still to come, the gradients so far
    waiting: dict[int, int] = {}
    for node in order:
        if node.group is not None:
            waiting[id(node.group)] = waiting.get(id(node.group), 0) + 1
    arrived: dict[int, dict[int, np.ndarray]] = {}
    for node in order:
        g_out = pending.pop(id(node), None)
        if g_out is not None:
            if node.freed:
                raise RuntimeError(
                    f"Trying to backward through the graph a second time (op {node.name()}): "
                    "its saved buffers were freed after the first backward. Call "
                    ".backward(retain_graph=True) the first time if you need to backward twice."
                )
            g_out = _run_hooks(node.hooks, g_out, node.shape, node.dtype)
            if capture is not None:
                if id(node) in capture:
                    _add_captured(capture, id(node), g_out)
            elif node.retained is not None:
                kept = node.retained()
                if kept is not None:
                    kept._accumulate(g_out)
        if node.group is None:
            if g_out is None:  # no gradient reached this node (e.g. only non-grad paths)
                continue
            g_outs: tuple = (g_out,)
        else:  # one output of several: backward once all of them are in
            key = id(node.group)
            waiting[key] -= 1
            if g_out is not None:
                arrived.setdefault(key, {})[_output_index(node)] = g_out
            if waiting[key] or key not in arrived:
                continue
            g_outs = _output_gradients(node.ctx, arrived.pop(key))
        grads = node.fn.backward(node.ctx, *g_outs)
        if not isinstance(grads, tuple):
            grads = (grads,)
        if len(grads) < len(node.inputs) or any(g is not None for g in grads[len(node.inputs) :]):
            # (extra gradients are allowed only as None, as in PyTorch)
            raise ValueError(
                f"{node.name()}.backward returned {len(grads)} gradient(s) for "
                f"{len(node.inputs)} input(s)"
            )
        where = f"{node.name()}.backward"
        fresh = node.fn.fresh_gradients
        for inp, g in zip(node.inputs, grads):
            if inp is None or g is None:
                continue
            if isinstance(inp, Node):
                g = as_gradient(g, inp.shape, inp.dtype, where)
                key = id(inp)
                # where paths meet (a residual join's input): the kernel's sum
                pending[key] = kernels().add(pending[key], g) if key in pending else g
            else:  # a leaf: accumulate into .grad (after its hooks, once: see below)
                g = as_gradient(g, inp.shape, inp.dtype, where)
                if capture is not None and id(inp) not in capture:
                    continue  # grad(): only the asked-for leaves, and no .grad changes
                if not inp._hooks and capture is None:
                    inp._accumulate(g, owned=fresh and _unshared(g, g_outs, grads))
                elif id(inp) in hooked:
                    hooked[id(inp)] = (inp, hooked[id(inp)][1] + g)
                else:
                    hooked[id(inp)] = (inp, g)
        if not retain_graph:
            node.ctx._free()
            for _, n in node.group or ((0, node),):
                n.freed = True
    for leaf, g in hooked.values():
        g = _run_hooks(leaf._hooks, g, leaf.shape, leaf.dtype)
        if capture is None:
            leaf._accumulate(g)
        else:
            _add_captured(capture, id(leaf), g)


def _add_captured(capture: dict[int, np.ndarray | None], key: int, g: np.ndarray) -> None:
    capture[key] = np.array(g, copy=True) if capture[key] is None else capture[key] + g


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    allow_unused: bool = False,
) -> tuple[np.ndarray | None, ...]:
    """d outputs / d inputs as ``torch.autograd.grad``: the gradients of the ``outputs``
    (seeded with ``grad_outputs``, 1 for scalars) with respect to each of ``inputs``
    (leaves or intermediate tensors, e.g. a residual stage's input), returned as ndarrays
    shaped like the inputs; no ``.grad`` is changed. An input the outputs do not depend
    on is an error unless ``allow_unused`` (then its gradient is None). The graph is
    freed unless ``retain_graph`` (no higher-order gradients: there is no create_graph).
    """
    from minires.tensor import Tensor

    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    for kind, ts in (("outputs", outs), ("inputs", ins)):
        if not ts or not all(isinstance(t, Tensor) for t in ts):
            raise TypeError(f"grad: {kind} must be a Tensor or a non-empty sequence of Tensors")
    seeds = [None] * len(outs) if grad_outputs is None else grad_outputs
    if isinstance(seeds, Tensor | np.ndarray) or not isinstance(seeds, Sequence):
        seeds = [seeds]
    if len(seeds) != len(outs):
        raise ValueError(f"grad: {len(seeds)} grad_outputs for {len(outs)} outputs")
    for i, t in enumerate(ins):
        if not t.requires_grad:
            raise ValueError(f"grad: inputs[{i}] (shape {t.shape}) does not require grad")
    keys = [id(t) if t.grad_fn is None else id(t.grad_fn) for t in ins]
    capture: dict[int, np.ndarray | None] = dict.fromkeys(keys)
    walk = []
    for k, (out, seed) in enumerate(zip(outs, seeds)):
        if not out.requires_grad:
            raise ValueError(f"grad: outputs[{k}] (shape {out.shape}) does not require grad")
        if seed is None:
            if out.data.size != 1:
                raise ValueError(
                    f"grad: outputs[{k}] has shape {out.shape}; give grad_outputs for a "
                    "non-scalar output"
                )
            seed = np.ones(out.shape, out.dtype)
        seed = seed.data if isinstance(seed, Tensor) else seed
        walk.append((out, as_gradient(seed, out.shape, out.dtype, f"grad: grad_outputs[{k}]")))
    _backward(walk, bool(retain_graph), capture)
    result = []
    for i, (t, key) in enumerate(zip(ins, keys)):
        g = capture[key]
        if g is None and not allow_unused:
            raise ValueError(
                f"grad: inputs[{i}] (shape {t.shape}) is not used to compute the outputs "
                "(allow_unused=True returns None for it)"
            )
        result.append(None if g is None else np.asarray(g, dtype=t.dtype).reshape(t.shape))
    return tuple(result)


def _output_index(node: Node) -> int:
    """Which output of its multi-output op ``node`` stands for."""
    return next(i for i, n in node.group if n is node)  # type: ignore[union-attr]


def _output_gradients(ctx: Context, arrived: dict[int, np.ndarray]) -> tuple:
    """The gradients of every output of a multi-output op, in order: those no gradient
    reached (or that are not differentiable) as zeros, or None without materializing."""
    return tuple(
        arrived[i]
        if i in arrived
        else (np.zeros(shape, dtype) if ctx._materialize_grads and dtype.kind == "f" else None)
        for i, (shape, dtype) in enumerate(ctx._output_meta)
    )


def _unshared(g: np.ndarray, g_outs: tuple, grads: tuple) -> bool:
    """Whether a leaf may keep ``g`` (from a `Function.fresh_gradients` op) as its
    ``.grad``: writeable, C-contiguous, and sharing memory neither with the op's output
    gradients ``g_outs`` nor with another gradient of the same call."""
    if not (g.flags.writeable and g.flags.c_contiguous):
        return False
    if any(isinstance(o, np.ndarray) and np.may_share_memory(g, o) for o in g_outs):
        return False
    return sum(isinstance(o, np.ndarray) and np.may_share_memory(g, o) for o in grads) <= 1


def iter_graph(root: Tensor) -> Iterator[Node]:
    """Yield the nodes of the graph behind ``root``, output first (for printing/teaching).

    Each node's ``inputs`` lists, per argument, None, a leaf Tensor or the producing Node.
    """
    if root.grad_fn is not None:
        yield from _topological_order(root.grad_fn)

"""Ops that move values around without arithmetic: reshape (view, flatten, squeeze,
unsqueeze), transpose (permute), indexing, zero padding, concatenation and stacking,
repeat (tile), sorting (sort, argsort, topk). Their backward moves the gradient back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from minires.autograd import Context, Function
from minires.functional._util import check_dim, check_int, check_tensor, resolve_dim_alias
from minires.functional.elementwise import cast
from minires.tensor import Tensor


class Reshape(Function):
    """out = a.reshape(shape)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        ctx.shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) "
                f"into {tuple(shape)}"
            ) from None

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return g.reshape(ctx.shape), None


class Clone(Function):
    """out = a copy of a (its own memory); the gradient passes unchanged."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray) -> np.ndarray:
        return a.copy()

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return (g,)


def clone(a: Tensor) -> Tensor:
    """A copy of ``a`` in new memory, recorded in the graph (as ``torch.clone``)."""
    check_tensor(a, "clone")
    return Clone.apply(a)


def split(a: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces of ``a`` along ``dim``, as ``torch.split``: an int is the size of every
    piece (the last may be smaller), a list gives each piece's size (summing to the
    dim's size). Each piece is a differentiable slice."""
    check_tensor(a, "split")
    d = check_dim(dim, a.ndim, "dim", "split")
    if a.ndim == 0:
        raise ValueError("split: a 0-d tensor has no dimension to split")
    n = a.shape[d]
    if isinstance(split_size_or_sections, list | tuple):
        sizes = [check_int(v, "section size", "split", minimum=0) for v in split_size_or_sections]
        if sum(sizes) != n:
            raise ValueError(
                f"split: section sizes {sizes} sum to {sum(sizes)}, not to dim {dim}'s size {n}"
            )
    else:
        step = check_int(split_size_or_sections, "split_size", "split", minimum=1)
        sizes = [min(step, n - s) for s in range(0, n, step)] or [0]
    bounds = np.cumsum([0] + sizes)
    lead = (slice(None),) * d
    pieces = zip(bounds[:-1], bounds[1:])
    return tuple(getitem(a, lead + (slice(int(b0), int(b1)),)) for b0, b1 in pieces)


def chunk(a: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """``a`` in ``chunks`` pieces along ``dim`` of size ceil(n / chunks) (fewer pieces if
    they run out), as ``torch.chunk``."""
    chunks = check_int(chunks, "chunks", "chunk", minimum=1)
    d = check_dim(dim, a.ndim, "dim", "chunk")
    return split(a, max(1, -(-a.shape[d] // chunks)), d)


class Transpose(Function):
    """out = a.transpose(axes)"""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
        if axes is not None and sorted(int(x) % max(a.ndim, 1) for x in axes) != list(
            range(a.ndim)
        ):
            raise ValueError(f"transpose: axes {axes} are not a permutation for shape {a.shape}")
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        # normalised first: argsort of (2, 0, -2) would not invert the permutation
        axes = None if ctx.axes is None else [a % g.ndim for a in ctx.axes]
        inverse = None if axes is None else tuple(int(i) for i in np.argsort(axes))
        return g.transpose(inverse), None


class GetItem(Function):
    """out = a[index] with PyTorch's rule for integers beside index arrays (see
    `_split_selects`); backward scatters (adding, so repeated indices accumulate)."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, index: Any) -> np.ndarray:
        ctx.shape, ctx.dtype = a.shape, a.dtype
        ctx.select, ctx.index = _split_selects(index, a.ndim)
        if ctx.select is not None:
            a = a[ctx.select]
        return np.asarray(a[ctx.index])

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        grad = np.zeros(ctx.shape, dtype=ctx.dtype)
        # a basic index gives a view: the scatter below writes through it into grad
        part = grad if ctx.select is None else grad[ctx.select]
        if _is_basic_index(ctx.index):
            # slices / ints / None / ... pick every element at most once, so a plain
            # assignment does what np.add.at does, much faster: the option-A shortcut's
            # x[:, :, ::2, ::2] (slice + pad) backward went from 7.3 to 1.2 ms per
            # ResNet-20 training step at batch 64
            part[ctx.index] = g
        else:
            np.add.at(part, ctx.index, g)
        return grad, None


def _is_int(i: Any) -> bool:
    return isinstance(i, int | np.integer) and not isinstance(i, bool | np.bool_)


def _split_selects(index: Any, ndim: int) -> tuple[tuple | None, Any]:
    """(select, rest) with ``a[index] == a[select][rest]`` as PyTorch computes it, or
    (None, index) when NumPy and PyTorch agree (``ndim``: a's dimensions).

    PyTorch applies integer indices first (each removes its dimension), then the index
    arrays; NumPy counts an integer as one more index array, so in ``x[1, :, idx]`` the
    array dimension moves to the front ((len(idx), n) instead of torch's (n, len(idx))).
    An Ellipsis that stands for no dimension is dropped: torch judges whether index arrays
    are adjacent by dimension, NumPy by place in the index."""
    items = index if isinstance(index, tuple) else (index,)
    arrays = [isinstance(i, np.ndarray | list) and np.ndim(i) > 0 for i in items]
    if sum(arrays) > 1 and any(i is Ellipsis for i in items):
        used = sum(
            np.ndim(i) if a and np.asarray(i).dtype == np.bool_ else 1
            for i, a in zip(items, arrays)
            if i is not None and i is not Ellipsis
        )
        if used == ndim:
            keep = [k for k, i in enumerate(items) if i is not Ellipsis]
            items, arrays = tuple(items[k] for k in keep), [arrays[k] for k in keep]
            index = items
    if not (any(arrays) and any(_is_int(i) for i in items)):
        return None, index
    select: list[Any] = []
    rest: list[Any] = []
    for i, is_array in zip(items, arrays):
        if i is Ellipsis:  # covers the same dimensions in both steps
            select.append(i)
            rest.append(i)
        elif i is None:  # a new axis: added in the second step
            rest.append(i)
        elif _is_int(i):
            select.append(i)
        else:  # slices and arrays; a boolean array spans its ndim dimensions
            n = np.ndim(i) if is_array and np.asarray(i).dtype == np.bool_ else 1
            select.extend([slice(None)] * n)
            rest.append(i)
    return tuple(select), tuple(rest)


def _is_basic_index(index: Any) -> bool:
    """True for NumPy *basic* indexing (no integer/bool arrays): no element repeats."""
    items = index if isinstance(index, tuple) else (index,)
    return all(
        i is None
        or i is Ellipsis
        or isinstance(i, slice)
        or (isinstance(i, int | np.integer) and not isinstance(i, bool))
        for i in items
    )


class Pad(Function):
    """Constant padding; ``pads`` is ((before, after), ...) for every axis, a negative
    entry cropping that many values instead."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, pads: tuple[tuple[int, int], ...], value: float):
        kept = tuple(slice(max(0, -b), n - max(0, -e)) for (b, e), n in zip(pads, a.shape))
        grown = tuple((max(0, b), max(0, e)) for b, e in pads)
        ctx.shape, ctx.kept = a.shape, kept
        ctx.inner = tuple(slice(b, b + k.stop - k.start) for (b, _), k in zip(grown, kept))
        return np.pad(a[kept], grown, mode="constant", constant_values=value)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        inner = g[ctx.inner]
        if inner.shape == ctx.shape:  # nothing was cropped
            return inner, None, None
        grad = np.zeros(ctx.shape, g.dtype)
        grad[ctx.kept] = inner
        return grad, None, None


class Concat(Function):
    """out = concatenate(tensors, axis); backward splits the gradient."""

    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, axis: int = 0) -> np.ndarray:
        ctx.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        ctx.axis = axis
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return tuple(np.split(g, ctx.bounds, axis=ctx.axis))


def _shape_arg(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``f(a, 2, 3)`` and ``f(a, (2, 3))`` both give ``(2, 3)``."""
    if len(args) == 1 and isinstance(args[0], tuple | list):
        return tuple(args[0])
    return args


def reshape(a: Tensor, *shape: Any) -> Tensor:
    """``a`` with a new shape (one entry may be -1); accepts ``reshape(a, 2, 3)`` or
    ``reshape(a, (2, 3))``. Sizes must be ints (no truncation of floats, as in PyTorch)."""
    check_tensor(a, "reshape")
    sizes = tuple(check_int(v, "shape entry", "reshape") for v in _shape_arg(shape))
    if sizes.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got shape {sizes}")
    if any(v < -1 for v in sizes):
        raise ValueError(f"reshape: invalid size in shape {sizes}: sizes must be >= 0 or -1")
    known = int(np.prod([v for v in sizes if v != -1], dtype=np.int64))
    if (-1 not in sizes and known != a.size) or (-1 in sizes and (known == 0 or a.size % known)):
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {sizes}"
        )
    return Reshape.apply(a, sizes)


def transpose(a: Tensor, *axes: Any) -> Tensor:
    """Permute axes like ``ndarray.transpose`` (reverse them when none are given; a tuple
    names every axis), except that two separate ints swap those two axes, as PyTorch's
    ``transpose(dim0, dim1)`` (NumPy would read ``transpose(0, 1)`` of a matrix as the
    identity permutation, silently giving ported PyTorch code the wrong tensor)."""
    check_tensor(a, "transpose")
    if len(axes) == 2 and all(_is_int(x) for x in axes):
        d0, d1 = (check_dim(x, a.ndim, "dim", "transpose") for x in axes)
        if a.ndim == 0:  # torch: dims 0 / -1 of a 0-d tensor, nothing to swap
            return Transpose.apply(a, None)
        perm = list(range(a.ndim))
        perm[d0], perm[d1] = d1, d0
        return Transpose.apply(a, tuple(perm))
    axes = _shape_arg(axes)
    if not axes:
        return Transpose.apply(a, None)
    dims = tuple(check_dim(x, a.ndim, "axis", "transpose") for x in axes)
    if a.ndim == 0 or sorted(dims) != list(range(a.ndim)):
        raise ValueError(
            f"transpose: axes {tuple(axes)} are not a permutation of the {a.ndim} axes of a "
            f"tensor of shape {a.shape}"
        )
    return Transpose.apply(a, dims)


def _plain_index(index: Any) -> Any:
    """``index`` with Tensors replaced by their arrays; a 0-d integer Tensor indexes as
    an int, as in PyTorch."""

    def plain(i: Any) -> Any:
        if isinstance(i, Tensor):
            i = i.data
            if i.ndim == 0 and i.dtype.kind in "iu":
                return int(i)
        return i

    return tuple(plain(i) for i in index) if isinstance(index, tuple) else plain(index)


def index_parts(index: Any, ndim: int) -> tuple[tuple | None, Any]:
    """(select, rest) for NumPy: ``a[index]`` as PyTorch reads it is ``a[select][rest]``
    (``a[rest]`` when select is None); for ``t[index] = v`` as well as ``t[index]``."""
    return _split_selects(_plain_index(index), ndim)


def getitem(a: Tensor, index: Any) -> Tensor:
    """``a[index]`` with NumPy indexing (slices, ints, integer/bool arrays, Tensors), and
    PyTorch's order where integers and index arrays meet (`_split_selects`); a 0-d
    integer Tensor indexes as an int, as in PyTorch."""
    return GetItem.apply(a, _plain_index(index))


def flatten(x: Tensor, start_dim: int = 1, end_dim: int = -1) -> Tensor:
    """Merge axes ``start_dim..end_dim`` into one: (N, C, H, W) -> (N, C*H*W) by default.
    Dims may be negative but must lie in range (no wrap-around, as in PyTorch)."""
    check_tensor(x, "flatten")
    if x.ndim == 0:  # torch: a 0-d tensor flattens to shape (1,)
        check_dim(start_dim, 1, "start_dim", "flatten")
        check_dim(end_dim, 1, "end_dim", "flatten")
        return reshape(x, (1,))
    start = check_dim(start_dim, x.ndim, "start_dim", "flatten")
    end = check_dim(end_dim, x.ndim, "end_dim", "flatten")
    if start > end:
        raise ValueError(
            f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}"
        )
    shape = x.shape[:start] + (int(np.prod(x.shape[start : end + 1])),) + x.shape[end + 1 :]
    return reshape(x, shape)


PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_index(n: int, before: int, after: int, mode: str, where: str) -> np.ndarray:
    """Where each position of an axis of length ``n`` padded by (before, after) takes its
    value from, as torch's ``F.pad(..., mode=mode)``: ``reflect`` mirrors about the edge
    values (without repeating them), ``replicate`` repeats them (both computed on the
    whole axis, then cropped by a negative entry), ``circular`` crops first and wraps
    around what is left. ``where`` names the axis and the input in errors."""
    size = n + before + after
    if size < 0:
        raise ValueError(f"pad: mode {mode!r} leaves a negative size {size}: {where}")
    if mode == "circular":
        lo, kept = max(0, -before), n - max(0, -before) - max(0, -after)
        if max(before, after) > kept:
            raise ValueError(
                f"pad: mode 'circular' needs padding <= the input size ({kept} after "
                f"cropping): {where}"
            )
        return lo + np.arange(-max(0, before), kept + max(0, after)) % max(kept, 1)
    if mode == "reflect" and max(before, after) >= n:
        raise ValueError(f"pad: mode 'reflect' needs padding < the input size: {where}")
    if size < 1 or n < 1:
        raise ValueError(
            f"pad: mode {mode!r} needs a non-empty input and output (sizes {n}, {size}): {where}"
        )
    i = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    return (n - 1) - np.abs((n - 1) - np.abs(i))  # reflect about 0 and about n - 1


def pad(
    x: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None
) -> Tensor:
    """``x`` padded as torch's ``F.pad``: ``pad`` lists (before, after) pairs starting
    from the LAST axis, e.g. ``(0, 0, 0, 0, 0, 8)`` on NCHW appends 8 zero channels (the
    option-A shortcut of CIFAR ResNets); a negative entry crops.

    mode ``"constant"`` fills with ``value`` (default 0) and pads any of x's axes;
    ``"reflect"``, ``"replicate"`` and ``"circular"`` take the values from x itself (see
    `_pad_index`), on the last 1, 2 or 3 axes of a 2-D to 5-D input (one or two leading
    axes: batch and channels, as torch). (..., D_i, ...) -> (..., D_i + before_i +
    after_i, ...)."""
    check_tensor(x, "pad")
    if not isinstance(pad, Sequence) or isinstance(pad, str):
        raise TypeError(f"pad: expected a tuple of ints, got {type(pad).__name__}")
    pad = tuple(check_int(p, "pad entry", "pad") for p in pad)
    if not isinstance(mode, str):
        raise TypeError(f"pad: mode must be a str, got {mode!r} ({type(mode).__name__})")
    if mode not in PAD_MODES:
        raise ValueError(f"pad: mode must be one of {PAD_MODES}, got {mode!r}")
    number = isinstance(value, int | float | np.integer | np.floating)
    if value is not None and (not number or isinstance(value, bool | np.bool_)):
        raise TypeError(f"pad: value must be a number, got {value!r} ({type(value).__name__})")
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: {tuple(pad)} must hold (before, after) pairs for <= {x.ndim} axes")
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(len(pad) // 2)]  # last axis first
    if mode == "constant":
        pads = [(0, 0)] * x.ndim
        for i, (before, after) in enumerate(pairs):
            axis = x.ndim - 1 - i
            if x.shape[axis] - max(0, -before) - max(0, -after) < 0:  # torch crops first
                raise ValueError(
                    f"pad: {(before, after)} on dim {axis} of input {x.shape} crops more "
                    f"than its {x.shape[axis]} values"
                )
            pads[axis] = (before, after)
        return Pad.apply(x, tuple(pads), 0.0 if value is None else value)
    if value:  # torch takes value=0 (the default's value) but nothing else here
        raise ValueError(f"pad: mode {mode!r} takes no value, got value={value!r}")
    if not (1 <= len(pairs) <= 3 and len(pairs) + 1 <= x.ndim <= len(pairs) + 2):
        raise ValueError(
            f"pad: mode {mode!r} pads the last 1-3 dims of an input with one or two more "
            f"(2-D to 5-D): pad {tuple(pad)} ({len(pairs)} dims) on an input of shape {x.shape}"
        )
    shape = x.shape
    for i, (before, after) in enumerate(pairs):
        if before == after == 0:
            continue
        axis = x.ndim - 1 - i
        where = f"padding {(before, after)} on dim {axis} of input {shape}"
        idx = _pad_index(x.shape[axis], before, after, mode, where)
        x = x[(slice(None),) * axis + (idx,)]  # a gather: the gradient adds up repeats
    return x


def cat(tensors: Sequence[Tensor], dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """Concatenate tensors along ``dim`` (or NumPy's ``axis``; default 0). Shapes must agree
    elsewhere; dtypes are promoted as in PyTorch (`_promoted`)."""
    if isinstance(tensors, Tensor) or not isinstance(tensors, Sequence):
        raise TypeError(f"cat: expected a list or tuple of Tensors, got {type(tensors).__name__}")
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: needs at least one tensor")
    for i, t in enumerate(tensors):
        check_tensor(t, "cat", f"tensors[{i}]")
        if t.ndim == 0:
            raise ValueError(
                f"cat: zero-dimensional tensor (at position {i}) cannot be concatenated"
            )
    ref = tensors[0].shape
    axis = resolve_dim_alias("cat", dim, axis, default=0)
    ax = check_dim(axis, len(ref), "dim", "cat")
    for t in tensors[1:]:
        if len(t.shape) != len(ref) or any(
            a != b for i, (a, b) in enumerate(zip(t.shape, ref)) if i != ax
        ):
            raise ValueError(
                f"cat: shapes {[tuple(t.shape) for t in tensors]} differ outside dim {axis}"
            )
    return Concat.apply(*_promoted(tensors, "cat"), axis=ax)


def _promoted(tensors: list[Tensor], op: str) -> list[Tensor]:
    """The tensors in one dtype, PyTorch's promotion: the widest float if any is a float
    (integers carry no gradient; a float32 / float64 mix becomes float64, differentiably),
    else NumPy's integer promotion; bools only with bools."""
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) == 1:
        return tensors
    kinds = {d.kind for d in dtypes}
    if "b" in kinds or not kinds <= set("fiu"):
        raise TypeError(f"{op}: cannot combine dtypes {sorted(map(str, dtypes))}")
    floats = [d for d in dtypes if d.kind == "f"]
    target = max(floats, key=lambda d: d.itemsize) if floats else np.result_type(*dtypes)
    return [cast(t, target) for t in tensors]


# -- PyTorch's names: stack, permute, unsqueeze, squeeze --------------------------------


class Stack(Function):
    """out = stack(tensors, dim): a new axis ``dim``; backward takes each slice back."""

    @staticmethod
    def forward(ctx: Context, *arrays: np.ndarray, dim: int = 0) -> np.ndarray:
        ctx.dim = dim
        return np.stack(arrays, axis=dim)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return tuple(np.moveaxis(g, ctx.dim, 0))


def stack(tensors: Sequence[Tensor], dim: int | None = None, *, axis: int | None = None) -> Tensor:
    """Stack tensors of one shape along a new dimension ``dim`` (default 0):
    k tensors of shape S -> shape S with k inserted at ``dim``."""
    if isinstance(tensors, Tensor):  # list() would take its rows
        raise TypeError("stack: expected a sequence of Tensors, got a Tensor")
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    if not all(isinstance(t, Tensor) for t in tensors):
        kinds = sorted({type(t).__name__ for t in tensors})
        raise TypeError(f"stack: expected a sequence of Tensors, got {', '.join(kinds)}")
    shapes = [t.shape for t in tensors]
    if len(set(shapes)) > 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {shapes}")
    ax = check_dim(
        resolve_dim_alias("stack", dim, axis, 0), len(shapes[0]), "dim", "stack", insert=True
    )
    return Stack.apply(*_promoted(tensors, "stack"), dim=ax)


def permute(a: Tensor, *dims: Any) -> Tensor:
    """Reorder the dimensions: ``permute(x, 0, 2, 3, 1)`` (NCHW -> NHWC), or a tuple.
    ``dims`` must name every dimension once."""
    if len(dims) == 1 and isinstance(dims[0], tuple | list):
        dims = tuple(dims[0])
    norm = tuple(check_dim(d, a.ndim, "dim", "permute") for d in dims)
    if sorted(norm) != list(range(a.ndim)):
        raise ValueError(
            f"permute: dims {tuple(dims)} are not a permutation of the {a.ndim} dimensions "
            f"of a tensor of shape {a.shape}"
        )
    return Transpose.apply(a, norm)


def unsqueeze(a: Tensor, dim: int) -> Tensor:
    """Insert a dimension of size 1 at ``dim`` (``-ndim - 1 <= dim <= ndim``)."""
    d = check_dim(dim, a.ndim, "dim", "unsqueeze", insert=True)
    return Reshape.apply(a, a.shape[:d] + (1,) + a.shape[d:])


def squeeze(a: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Remove dimensions of size 1: all of them, or those in ``dim`` (a dimension named
    there that is not of size 1 is kept, as in torch)."""
    if dim is None:
        drop = {i for i, n in enumerate(a.shape) if n == 1}
    else:
        dims = dim if isinstance(dim, tuple | list) else (dim,)
        named = {check_dim(d, a.ndim, "dim", "squeeze") for d in dims}
        drop = {i for i in named if a.ndim and a.shape[i] == 1}
    return Reshape.apply(a, tuple(n for i, n in enumerate(a.shape) if i not in drop))


# -- repeat, tile ----------------------------------------------------------------------------


class Repeat(Function):
    """out = ``a`` tiled ``reps[i]`` times along dimension i (torch's ``repeat``, NumPy's
    ``tile``), ``a`` first given leading dimensions of size 1 up to ``len(reps)``; the
    gradient sums the copies."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, reps: tuple[int, ...]) -> np.ndarray:
        padded = (1,) * (len(reps) - a.ndim) + a.shape
        ctx.shape, ctx.padded, ctx.reps = a.shape, padded, reps
        return np.tile(a.reshape(padded), reps)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        # out dim i of size r * s is (copy k, position j) at k * s + j: split, sum the copies
        split = [n for r, s in zip(ctx.reps, ctx.padded) for n in (r, s)]
        copies = tuple(range(0, len(split), 2))
        return g.reshape(split).sum(axis=copies).reshape(ctx.shape), None


def _sizes(op: str, sizes: tuple[Any, ...]) -> tuple[int, ...]:
    """``(2, 3)`` from ``f(2, 3)``, ``f((2, 3))`` or ``f([2, 3])``: ints >= 0."""
    if len(sizes) == 1 and isinstance(sizes[0], tuple | list):
        sizes = tuple(sizes[0])
    return tuple(check_int(n, "each size", op, minimum=0) for n in sizes)


class Flip(Function):
    """out = a reversed along ``axes`` (a copy, as torch's flip); the gradient is g
    reversed back."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        ctx.axes = axes
        return np.flip(a, axes).copy()

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        return np.flip(g, ctx.axes), None


def flip(input: Tensor, dims: Any) -> Tensor:  # noqa: A002 - torch's argument names
    """``input`` with the order of its entries reversed along ``dims`` (an int or a
    sequence of distinct dims), as ``torch.flip``: same shape, a new tensor."""
    check_tensor(input, "flip")
    seq = (dims,) if isinstance(dims, int | np.integer) and not isinstance(dims, bool) else dims
    if not isinstance(seq, Sequence) or isinstance(seq, str):
        raise TypeError(f"flip: dims must be an int or a sequence of ints, got {dims!r}")
    axes = tuple(check_dim(d, input.ndim, "dim", "flip") for d in seq)
    if len(set(axes)) != len(axes):
        raise ValueError(f"flip: dim {list(seq)} appears multiple times in the list of dims")
    if input.ndim == 0:
        return Flip.apply(input, ())
    return Flip.apply(input, axes)


def repeat(a: Tensor, *sizes: Any) -> Tensor:
    """``a`` repeated ``sizes[i]`` times along each dimension, as ``Tensor.repeat``:
    ``x.repeat(2, 1)`` of a (3, 4) tensor is (6, 4). ``sizes`` needs one entry per
    dimension at least; extra leading entries add dimensions ((4,) with (2, 3) -> (2, 12)).
    Differentiable (the gradient sums the copies)."""
    check_tensor(a, "repeat")
    reps = _sizes("repeat", sizes)
    if len(reps) < a.ndim:
        raise ValueError(
            f"repeat: {len(reps)} sizes {reps} for a tensor of shape {a.shape}: give one per "
            "dimension at least (as torch; tile() prepends 1s instead)"
        )
    return Repeat.apply(a, reps)


def tile(a: Tensor, dims: Any) -> Tensor:
    """``a`` repeated ``dims[i]`` times along each dimension, as ``torch.tile``: like
    `repeat`, but fewer entries than dimensions are padded with leading 1s
    (``x.tile(2)`` of a (3, 4) tensor is (3, 8))."""
    check_tensor(a, "tile")
    reps = _sizes("tile", dims if isinstance(dims, tuple | list) else (dims,))
    return Repeat.apply(a, (1,) * (a.ndim - len(reps)) + reps)


# -- sort, argsort, topk ---------------------------------------------------------------------


class ValuesIndices(NamedTuple):
    """What `sort` and `topk` return, as torch's ``return_types``: unpacks as
    ``values, indices = x.sort()``; ``values`` is differentiable, ``indices`` int64."""

    values: Tensor
    indices: Tensor


class TakeAlong(Function):
    """out = ``a``'s values at ``indices`` along ``axis`` (``np.take_along_axis``), for
    indices distinct along the axis (a sort, or its first k): backward puts each
    gradient back where its value came from."""

    @staticmethod
    def forward(ctx: Context, a: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
        ctx.shape, ctx.indices, ctx.axis = a.shape, indices, axis
        return np.take_along_axis(a, indices, axis)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray):
        grad = np.zeros(ctx.shape, g.dtype)
        np.put_along_axis(grad, ctx.indices, g, ctx.axis)
        return grad, None, None


def _sort_order(a: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """int64 indices that sort ``a`` along ``axis``, stable (ties keep their order, as
    torch's CPU sort), NaN counted as the largest value: last ascending, first descending."""
    if not descending:
        return np.argsort(a, axis=axis, kind="stable")
    # sort the reversed array ascending and read it backwards: descending with NaN first
    # and ties still in their original order (negating would wrap integers, misplace NaN)
    backwards = np.argsort(np.flip(a, axis), axis=axis, kind="stable")
    return (a.shape[axis] - 1) - np.flip(backwards, axis)


def _sort_args(op: str, a: Tensor, dim: Any, flag: Any, flag_name: str) -> tuple[Tensor, int]:
    """(a as at least 1-D, the checked dim): a 0-d tensor sorts as one element (torch)."""
    check_tensor(a, op)
    if not isinstance(flag, bool | np.bool_):
        raise TypeError(f"{op}: {flag_name} must be a bool, got {flag!r}")
    d = check_dim(dim, a.ndim, "dim", op)
    return (reshape(a, 1) if a.ndim == 0 else a), d


def sort(
    input: Tensor,  # noqa: A002 - torch's argument names
    dim: int = -1,
    descending: bool = False,
    stable: bool = False,
) -> ValuesIndices:
    """``(values, indices)`` of ``input`` sorted along ``dim``, as ``torch.sort``: same
    shapes as ``input``; values differentiable (the gradient goes back to where each
    value came from), indices int64. Always stable (ties keep their order, as torch on
    the CPU; ``stable`` is accepted); NaN sorts as the largest value."""
    a, d = _sort_args("sort", input, dim, descending, "descending")
    if not isinstance(stable, bool | np.bool_):
        raise TypeError(f"sort: stable must be a bool, got {stable!r}")
    order = _sort_order(a.data, d, bool(descending))
    values = TakeAlong.apply(a, order, d)
    if input.ndim == 0:
        return ValuesIndices(reshape(values, ()), Tensor._wrap(order.reshape(())))
    return ValuesIndices(values, Tensor._wrap(order))


def argsort(
    input: Tensor,  # noqa: A002
    dim: int = -1,
    descending: bool = False,
    stable: bool = False,
) -> Tensor:
    """int64 indices that sort ``input`` along ``dim`` (`sort`'s ``indices``), as
    ``torch.argsort``: same shape as ``input``; stable, NaN as the largest value."""
    a, d = _sort_args("argsort", input, dim, descending, "descending")
    order = _sort_order(a.data, d, bool(descending))
    return Tensor._wrap(order.reshape(input.shape))


def topk(
    input: Tensor,  # noqa: A002
    k: int,
    dim: int = -1,
    largest: bool = True,
    sorted: bool = True,  # noqa: A002 - torch's argument name
) -> ValuesIndices:
    """``(values, indices)`` of the ``k`` largest (``largest=False``: smallest) values
    along ``dim``, as ``torch.topk``: ``dim``'s size becomes k; values differentiable,
    indices int64. Always in sorted order (torch's ``sorted=False`` leaves the order
    unspecified); among ties the earlier index comes first (torch's pick among ties is
    unspecified); NaN counts as the largest value."""
    a, d = _sort_args("topk", input, dim, largest, "largest")
    if not isinstance(sorted, bool | np.bool_):
        raise TypeError(f"topk: sorted must be a bool, got {sorted!r}")
    k = check_int(k, "k", "topk", minimum=0)
    if input.ndim == 0 and k == 0:
        k = 1  # torch: a 0-d tensor's top 0 is the tensor itself (its only shape is ())
    if k > a.shape[d]:
        raise ValueError(
            f"topk: k={k} is out of range for dim {dim} of size {a.shape[d]} "
            f"(input shape {input.shape})"
        )
    order = np.take(_sort_order(a.data, d, bool(largest)), range(k), axis=d)
    values = TakeAlong.apply(a, order, d)
    if input.ndim == 0:
        return ValuesIndices(reshape(values, ()), Tensor._wrap(order.reshape(())))
    return ValuesIndices(values, Tensor._wrap(order))

"""Drawings of the recorded graph (``mr.viz``): Graphviz DOT text, and SVG/PNG files.

    y = model(x)
    print(mr.viz.to_dot(y, params=dict(model.named_parameters())))
    mr.viz.draw(y, "graph.svg")

One node per op (its name and output shape), parameters and inputs as leaves (named when
they are given in ``params`` or were seen by `trace`), edges in the direction of the
forward pass. Draw before ``backward()``: a backward without ``retain_graph`` frees the
graph.

Residual blocks. Inside ``with mr.viz.trace(model):`` every op a block creates is tagged
with the block's name and with the part of the block it belongs to - ``residual`` (the
branch F(x)), ``identity`` (the shortcut's own ops, e.g. a 1x1 projection) or ``out``
(the add and what follows). A block is any module with a ``residual()`` method and a
``has_skip`` attribute (every block in `minires.models.blocks`, and yours if it follows
that protocol); `trace` temporarily wraps ``forward``, ``residual`` and ``shortcut`` on
each block *instance*, so the block's own code runs unchanged. With those tags
``to_dot(..., collapse_blocks=True)`` draws each block as one box, and
``color_paths=True`` colours the identity path blue and the residual path orange: the
add is where the two paths merge going forward, and the block's input - drawn with a
double border - is where their two gradients add going backward.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minires.autograd import Node
from minires.nn.module import Module
from minires.tensor import Tensor

__all__ = ["trace", "to_dot", "draw", "plot", "GraphTrace"]

Shape = tuple[int, ...]

# =======================================================================================
# The one place that knows how a Node points at its inputs
# =======================================================================================


def _parents(node: Node) -> list[tuple[Node | Tensor, Shape | None]]:
    """The inputs of ``node`` that take part in autograd: ``(parent, shape)`` pairs,
    where ``parent`` is the producing Node of a non-leaf input or the leaf Tensor itself
    (a parameter or an input), and ``shape`` that input's shape when it is known here.

    Accepts both graph layouts: ``node.inputs[i]`` a Tensor (with or without
    ``grad_fn``), or - when Nodes do not hold their input tensors - None, a leaf Tensor
    or the producing Node.
    """
    out: list[tuple[Node | Tensor, Shape | None]] = []
    for inp in node.inputs:
        if inp is None:
            continue
        if isinstance(inp, Tensor):
            if inp.grad_fn is not None:
                out.append((inp.grad_fn, tuple(inp.shape)))
            else:
                out.append((inp, tuple(inp.shape)))
        else:  # a Node
            out.append((inp, None))
    return out


def _out_shape(node: Node, hint: Shape | None = None) -> Shape | None:
    """The output shape of ``node``: ``node.shape`` where Nodes record it, else the shape
    seen on the tensor that carried it (``hint``)."""
    shape = getattr(node, "shape", None)
    return tuple(shape) if shape is not None else hint


# =======================================================================================
# Block boundaries: `trace`
# =======================================================================================


@dataclass(eq=False)
class BlockCall:
    """One call of a block: its dotted name, class, input and output (weakly held)."""

    name: str
    kind: str
    input: Any = None  # weakref to the input's producing Node, or to the leaf input Tensor
    output: Any = None  # weakref to the output's Node

    def input_obj(self) -> Node | Tensor | None:
        return self.input() if self.input is not None else None


# node -> (block call, role); weak, so tags vanish with the graph
_TAGS: weakref.WeakKeyDictionary[Node, tuple[BlockCall, str]] = weakref.WeakKeyDictionary()
# id(tensor) -> (weakref(tensor), name): parameter names seen by `trace`
_NAMES: dict[int, tuple[Any, str]] = {}


def _is_block(module: Any) -> bool:
    return callable(getattr(module, "residual", None)) and hasattr(module, "has_skip")


@dataclass
class GraphTrace:
    """What `trace` recorded: the block calls, in order, and the parameter names."""

    calls: list[BlockCall] = field(default_factory=list)
    params: dict[str, Tensor] = field(default_factory=dict)


def _tag_between(out: Any, x: Any, call: BlockCall, role: str) -> None:
    """Tag every untagged node between ``x`` (exclusive) and ``out`` (inclusive)."""
    if not isinstance(out, Tensor) or out.grad_fn is None or out is x:
        return
    stop = x.grad_fn if isinstance(x, Tensor) else None
    stack = [out.grad_fn]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen or node is stop or node in _TAGS:
            continue
        seen.add(id(node))
        _TAGS[node] = (call, role)
        stack.extend(p for p, _ in _parents(node) if isinstance(p, Node))


@contextlib.contextmanager
def trace(
    model: Module, blocks: Callable[[Module], bool] | Iterable[str] | None = None
) -> Iterator[GraphTrace]:
    """Record block boundaries (and parameter names) of the graphs built inside.

    Args:
        model: the model whose blocks are tagged.
        blocks: which modules count as blocks: a predicate on modules, or dotted module
            names; default every module with ``residual()`` and ``has_skip`` (a block
            inside another block is tagged with the inner one).

    Yields a `GraphTrace`. Use::

        with mr.viz.trace(model):
            y = model(x)
        mr.viz.to_dot(y, collapse_blocks=True)
    """
    if not isinstance(model, Module):
        raise TypeError(f"viz.trace: expected an nn.Module, got {type(model).__name__}")
    if blocks is None:
        pred: Callable[[str, Module], bool] = lambda n, m: _is_block(m)  # noqa: E731
    elif callable(blocks):
        pred = lambda n, m: bool(blocks(m))  # noqa: E731
    else:
        wanted = set(blocks)
        known = {n for n, _ in model.named_modules()}
        if wanted - known:
            raise ValueError(f"viz.trace: no module named {sorted(wanted - known)} in the model")
        pred = lambda n, m: n in wanted  # noqa: E731
    result = GraphTrace(params=dict(model.named_parameters()))
    for key in [k for k, (ref, _) in _NAMES.items() if ref() is None]:
        del _NAMES[key]  # names of tensors that no longer exist
    for name, p in result.params.items():
        _NAMES[id(p)] = (weakref.ref(p), name)
    patched: list[tuple[Module, str, bool, Any]] = []

    def wrap(mod: Module, name: str, attr: str, current: list[BlockCall | None]) -> None:
        original = getattr(mod, attr)

        def wrapped(x: Any, *args: Any, **kwargs: Any) -> Any:
            if attr == "forward":
                call = BlockCall(name or "(model)", type(mod).__name__)
                current.append(call)
                try:
                    out = original(x, *args, **kwargs)
                finally:
                    current.pop()
                if isinstance(x, Tensor):
                    src = x.grad_fn if x.grad_fn is not None else x
                    call.input = weakref.ref(src)
                if isinstance(out, Tensor) and out.grad_fn is not None:
                    call.output = weakref.ref(out.grad_fn)
                    _tag_between(out, x, call, "out")
                    result.calls.append(call)
                return out
            out = original(x, *args, **kwargs)
            call = current[-1] if current else None
            if call is not None:  # residual()/shortcut() called by the block's forward
                _tag_between(out, x, call, "residual" if attr == "residual" else "identity")
            return out

        patched.append((mod, attr, attr in mod.__dict__, mod.__dict__.get(attr)))
        object.__setattr__(mod, attr, wrapped)

    try:
        for name, mod in model.named_modules():
            if not pred(name, mod):
                continue
            current: list[BlockCall | None] = []
            for attr in ("forward", "residual", "shortcut"):
                if callable(getattr(mod, attr, None)):
                    wrap(mod, name, attr, current)
        yield result
    finally:
        for mod, attr, had, previous in reversed(patched):
            if had:
                object.__setattr__(mod, attr, previous)
            else:
                mod.__dict__.pop(attr, None)


# =======================================================================================
# DOT
# =======================================================================================

RESIDUAL_COLOR = "#e6550d"  # orange: the branch F(x)
IDENTITY_COLOR = "#3182bd"  # blue: the skip connection
_FILL = {"op": "#eeeeee", "param": "#cfe2f3", "input": "#d9ead3", "output": "#ffe599",
         "residual": "#fdd0a2", "identity": "#c6dbef", "block": "#e5e0f5"}  # fmt: skip


def _shape_str(shape: Shape | None) -> str:
    return "?" if shape is None else str(tuple(int(s) for s in shape))


def _q(text: str) -> str:
    """A DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(**kw: Any) -> str:
    return "[" + ", ".join(f"{k}={_q(str(v))}" for k, v in kw.items() if v is not None) + "]"


def _leaf_name(t: Tensor, names: dict[int, str]) -> str | None:
    if id(t) in names:
        return names[id(t)]
    entry = _NAMES.get(id(t))
    if entry is not None and entry[0]() is t:
        return entry[1]
    return None


def _collect(root: Node) -> tuple[list[Node], dict[int, Shape | None], list[Tensor]]:
    """Every node reachable from ``root`` (output first), their output shapes, and the
    leaf tensors in order of discovery."""
    nodes: list[Node] = []
    shapes: dict[int, Shape | None] = {}
    leaves: dict[int, Tensor] = {}
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        nodes.append(node)
        for parent, shape in _parents(node):
            if isinstance(parent, Node):
                if shapes.get(id(parent)) is None:
                    shapes[id(parent)] = _out_shape(parent, shape)
                stack.append(parent)
            else:
                leaves.setdefault(id(parent), parent)
    return nodes, shapes, list(leaves.values())


GNode = tuple[str, dict[str, Any]]
GEdge = tuple[str, str, dict[str, Any]]


def to_dot(
    tensor: Tensor,
    params: dict[str, Tensor] | None = None,
    collapse_blocks: bool = False,
    color_paths: bool = False,
    show_params: bool = True,
) -> str:
    """Graphviz DOT source of the graph that produced ``tensor``.

    Args:
        tensor: a Tensor with a recorded graph (``grad_fn`` not None).
        params: optional names for leaf tensors (``dict(model.named_parameters())``, or
            ``{"x": x}``); names seen by `trace` are used too. Unnamed leaves are drawn
            as "input".
        collapse_blocks: draw each residual block (recorded by `trace`) as one box with
            its name, number of ops and parameters, and output shape.
        color_paths: colour each block's residual path orange and its identity path blue,
            mark the add where they merge and the block input where their gradients add.
        show_params: draw the parameter leaves (False keeps big graphs readable; inputs
            are always drawn).

    Returns:
        The DOT text (``digraph``), edges pointing the way data flows forward.

    Raises:
        ValueError: ``tensor`` has no graph (a leaf, or computed without gradients), or
            block options were asked for a graph recorded outside `trace`.
    """
    gnodes, gedges, legend = _graph(tensor, params, collapse_blocks, color_paths, show_params)
    lines = [
        "digraph minires {",
        '  graph [rankdir=TB, fontname="Helvetica", fontsize=10, nodesep=0.25, ranksep=0.3];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10, '
        f'fillcolor="{_FILL["op"]}", color="#666666"];',
        '  edge [color="#777777", arrowsize=0.7];',
    ]
    lines += [f"  {nid} " + _attrs(**attrs) for nid, attrs in gnodes]
    lines += [f"  {a} -> {b}" + (f" {_attrs(**attrs)}" if attrs else "") + ";"
              for a, b, attrs in gedges]  # fmt: skip
    if legend:
        lines.append("  legend " + _attrs(label=legend, shape="note", fillcolor="#ffffff",
                                          style="filled"))  # fmt: skip
    lines.append("}")
    return "\n".join(lines) + "\n"


def _graph(
    tensor: Tensor,
    params: dict[str, Tensor] | None,
    collapse_blocks: bool,
    color_paths: bool,
    show_params: bool = True,
) -> tuple[list[GNode], list[GEdge], str | None]:
    """The drawing as data: nodes (id, DOT attributes), edges (from, to, attributes) and
    the legend text; `to_dot` and `plot` render it."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"viz.to_dot: expected a Tensor, got {type(tensor).__name__}")
    if tensor.grad_fn is None:
        raise ValueError(
            "viz.to_dot: this tensor has no recorded graph (grad_fn is None): it is a leaf, "
            "or it was computed under mr.no_grad() or from tensors that do not require "
            "grad. Draw the output of ops on tensors with requires_grad=True."
        )
    names = {id(t): n for n, t in (params or {}).items()}
    root = tensor.grad_fn
    nodes, shapes, leaves = _collect(root)
    shapes[id(root)] = _out_shape(root, tuple(tensor.shape))
    tags = {id(n): _TAGS.get(n) for n in nodes}
    if (collapse_blocks or color_paths) and not any(tags.values()):
        raise ValueError(
            "viz.to_dot: collapse_blocks/color_paths need block boundaries, and none were "
            "recorded for this graph: build it inside `with mr.viz.trace(model): y = model(x)`"
        )

    ids: dict[int, str] = {}
    for i, n in enumerate(nodes):
        ids[id(n)] = f"n{i}"
    for i, t in enumerate(leaves):
        ids[id(t)] = f"t{i}"

    def block_of(obj: Any) -> BlockCall | None:
        tag = tags.get(id(obj)) if isinstance(obj, Node) else None
        return tag[0] if tag and collapse_blocks else None

    # block calls present in this graph, in discovery order, with their display ids
    calls: dict[int, BlockCall] = {}
    for n in nodes:
        if tags[id(n)]:
            calls.setdefault(id(tags[id(n)][0]), tags[id(n)][0])
    call_ids = {k: f"b{i}" for i, k in enumerate(calls)}

    def display(obj: Any) -> str:
        blk = block_of(obj)
        return call_ids[id(blk)] if blk is not None else ids[id(obj)]

    # the merge (add) node and the input of each block call, for colouring
    merge: dict[int, Node] = {}
    fork: set[int] = set()
    if color_paths:
        for n in nodes:
            tag = tags[id(n)]
            if not tag or tag[1] != "out":
                continue
            roles = [tags.get(id(p), None) for p, _ in _parents(n)]
            if any(r is not None and r[0] is tag[0] and r[1] == "residual" for r in roles):
                merge[id(tag[0])] = n
        for key, call in calls.items():
            src = call.input_obj()
            if key in merge and src is not None:
                fork.add(id(src))

    gnodes: list[GNode] = []
    gedges: list[GEdge] = []
    fork_note = "\n(input of a block: the gradients\nof both paths add here)"

    # leaves
    hidden_leaves: set[int] = set()
    block_params: dict[int, int] = {}
    for t in leaves:
        consumers = [n for n in nodes if any(p is t for p, _ in _parents(n))]
        blks = {id(block_of(n)) for n in consumers}
        name = _leaf_name(t, names)
        is_param = name is not None and id(t) not in fork
        inside_one_block = len(blks) == 1 and all(block_of(n) is not None for n in consumers)
        if collapse_blocks and is_param and inside_one_block:
            hidden_leaves.add(id(t))  # a parameter inside a collapsed block
            block_params[next(iter(blks))] = block_params.get(next(iter(blks)), 0) + t.data.size
            continue
        if is_param and not show_params:
            hidden_leaves.add(id(t))
            continue
        label = f"{name or 'input'}\n{_shape_str(tuple(t.shape))}"
        kind = "param" if is_param else "input"
        extra: dict[str, Any] = {}
        if color_paths and id(t) in fork:
            label += fork_note
            extra = {"peripheries": 2, "penwidth": 1.5}
        gnodes.append(
            (
                ids[id(t)],
                dict(
                    label=label,
                    shape="box" if is_param else "oval",
                    style="filled",
                    fillcolor=_FILL[kind],
                    **extra,
                ),
            )
        )

    # op nodes (or block boxes)
    drawn_blocks: set[int] = set()
    for n in nodes:
        blk = block_of(n)
        if blk is not None:
            if id(blk) in drawn_blocks:
                continue
            drawn_blocks.add(id(blk))
            members = [m for m in nodes if block_of(m) is blk]
            out_node = blk.output() if blk.output is not None else None
            shape = shapes.get(id(out_node)) if out_node is not None else None
            n_par = block_params.get(id(blk), 0)
            label = f"{blk.name}: {blk.kind}\n{len(members)} ops"
            label += (f", {n_par:,} params" if n_par else "") + f"\n{_shape_str(shape)}"
            fill = _FILL["output"] if out_node is root else _FILL["block"]
            gnodes.append((call_ids[id(blk)], dict(label=label, fillcolor=fill, penwidth=1.5)))
            continue
        tag = tags[id(n)]
        label = f"{n.name()}\n{_shape_str(shapes.get(id(n)))}"
        attrs: dict[str, Any] = {}
        if n is root:
            attrs["fillcolor"] = _FILL["output"]
        if color_paths and tag:
            if tag[1] in ("residual", "identity"):
                attrs["fillcolor"] = _FILL[tag[1]]
            if merge.get(id(tag[0])) is n:
                label += "\nidentity + residual"
                attrs.update(penwidth=2.5, color="#54278f")
        if color_paths and id(n) in fork:
            label += fork_note
            attrs.update(peripheries=2, penwidth=1.5)
        gnodes.append((ids[id(n)], dict(label=label, **attrs)))

    # edges
    seen_edges: set[tuple[str, str]] = set()
    for n in nodes:
        dst = display(n)
        tag = tags[id(n)]
        for parent, _ in _parents(n):
            if id(parent) in hidden_leaves:
                continue
            src = display(parent)
            if src == dst:
                continue
            if collapse_blocks:
                if (src, dst) in seen_edges:
                    continue
                seen_edges.add((src, dst))
            attrs = {}
            if color_paths and tag:
                ptag = tags.get(id(parent)) if isinstance(parent, Node) else None
                same = ptag is not None and ptag[0] is tag[0]
                is_input = id(parent) in fork and tag[0].input_obj() is parent
                if tag[1] == "residual" and (same or is_input):
                    attrs = {"color": RESIDUAL_COLOR, "penwidth": 2}
                elif tag[1] == "identity" and (same or is_input):
                    attrs = {"color": IDENTITY_COLOR, "penwidth": 2}
                elif merge.get(id(tag[0])) is n:
                    if same and ptag[1] == "residual":
                        attrs = {"color": RESIDUAL_COLOR, "penwidth": 2, "label": " F(x)"}
                    elif (same and ptag[1] == "identity") or is_input:
                        attrs = {"color": IDENTITY_COLOR, "penwidth": 2, "label": " identity"}
            gedges.append((src, dst, attrs))

    legend = None
    if color_paths:
        legend = ("orange: residual path F(x)\nblue: identity path (the shortcut)\n"
                  "double border: a block's input - in backward it receives\n"
                  "the identity gradient plus the residual gradient")  # fmt: skip
    return gnodes, gedges, legend


def plot(
    tensor: Tensor,
    params: dict[str, Tensor] | None = None,
    collapse_blocks: bool = False,
    color_paths: bool = False,
    show_params: bool = True,
    ax: Any = None,
    fontsize: float = 7,
) -> Any:
    """Draw the graph with matplotlib (no Graphviz needed): the same nodes, colours and
    edges as `to_dot` (edge labels left to the legend), laid out in layers (inputs and
    parameters at the top, the output at the bottom). Good for graphs of a few dozen ops;
    use `draw` for bigger ones.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    gnodes, gedges, legend = _graph(tensor, params, collapse_blocks, color_paths, show_params)
    ids = [nid for nid, _ in gnodes]
    preds: dict[str, list[str]] = {i: [] for i in ids}
    succs: dict[str, list[str]] = {i: [] for i in ids}
    for a, b, _ in gedges:
        preds[b].append(a)
        succs[a].append(b)
    # longest path from the sources; a source sits one layer above its first consumer
    rank: dict[str, int] = {}
    order = _toposort(ids, preds, succs)
    for i in order:
        rank[i] = max((rank[p] + 1 for p in preds[i]), default=0)
    for i in reversed(order):
        if not preds[i] and succs[i]:
            rank[i] = min(rank[c] for c in succs[i]) - 1
    layers: dict[int, list[str]] = {}
    for i in order:
        layers.setdefault(rank[i], []).append(i)
    x: dict[str, float] = {}
    for r in sorted(layers):  # barycentre of the parents above, one sweep down
        row = layers[r]
        row.sort(key=lambda i: _mean([x[p] for p in preds[i] if p in x], default=0.0))
        for k, i in enumerate(row):
            x[i] = k - (len(row) - 1) / 2
    width = max(len(v) for v in layers.values())
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.9 * width), max(3.0, 0.8 * len(layers))))
    else:
        fig = ax.figure
    attrs = dict(gnodes)
    for a, b, e in gedges:
        ax.annotate(
            "",
            xy=(x[b], -rank[b]),
            xytext=(x[a], -rank[a]),
            arrowprops=dict(
                arrowstyle="->",
                color=e.get("color", "#777777"),
                lw=float(e.get("penwidth", 1)),
                shrinkA=9,
                shrinkB=9,
                # an edge that skips layers bows out, so it is not hidden behind the
                # nodes it passes (a skip connection beside a straight residual path)
                connectionstyle=f"arc3,rad={0.35 if abs(rank[b] - rank[a]) > 1 else 0}",
            ),
        )
    for i in ids:
        a = attrs[i]
        box = "round,pad=0.3" if a.get("shape", "box") == "box" else "round4,pad=0.3"
        ax.text(
            x[i],
            -rank[i],
            a["label"],
            ha="center",
            va="center",
            fontsize=fontsize,
            bbox=dict(
                boxstyle=box,
                facecolor=a.get("fillcolor", _FILL["op"]),
                edgecolor=a.get("color", "#666666"),
                lw=float(a.get("penwidth", 1)) * (2 if a.get("peripheries") else 1),
            ),
        )
    if legend:
        ax.text(
            0.5,
            -0.01,
            legend,
            transform=ax.transAxes,
            fontsize=fontsize,
            ha="center",
            va="top",
            bbox=dict(boxstyle="square,pad=0.4", facecolor="white", edgecolor="#999999"),
        )
    ax.set_xlim(-width / 2 - 0.3, width / 2 + 0.3)
    ax.set_ylim(-max(rank.values()) - 0.7, -min(rank.values()) + 0.7)
    ax.axis("off")
    return fig


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _toposort(
    ids: list[str], preds: dict[str, list[str]], succs: dict[str, list[str]]
) -> list[str]:
    indeg = {i: len(preds[i]) for i in ids}
    ready = [i for i in ids if indeg[i] == 0]
    out: list[str] = []
    while ready:
        i = ready.pop()
        out.append(i)
        for c in succs[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    return out


# =======================================================================================
# Files
# =======================================================================================


def _graphviz_missing() -> str | None:
    """Why Graphviz cannot render here, or None when it can."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return "the 'graphviz' Python package is not installed (pip install graphviz)"
    if shutil.which("dot") is None:
        return "the Graphviz 'dot' program is not on PATH (e.g. apt-get install graphviz)"
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def draw(tensor: Tensor, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write the graph of ``tensor`` to ``path`` (``.svg``, ``.png``, ``.pdf`` or ``.dot``).

    Renders with Graphviz when the ``graphviz`` Python package and the ``dot`` program are
    installed. Otherwise it writes the DOT source next to ``path`` (same name, ``.dot``),
    prints how to render it, and returns that file's path. ``kwargs`` go to `to_dot`.

    Returns:
        The path of the file written.
    """
    src = to_dot(tensor, **kwargs)
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "svg"
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise ValueError(f"viz.draw: unsupported file type {path.suffix!r}; use .svg, .png, "
                         ".pdf or .dot")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        _write_atomic(path, src.encode())
        return path
    why = _graphviz_missing()
    if why is None:
        import graphviz

        _write_atomic(path, graphviz.Source(src).pipe(format=fmt))
        return path
    dot_path = path.with_suffix(".dot")
    _write_atomic(dot_path, src.encode())
    print(
        f"viz.draw: cannot render {path.name}: {why}. Wrote the DOT source to {dot_path}; "
        f"render it with:  dot -T{fmt} {dot_path} -o {path}  (or paste it into any "
        "Graphviz viewer)"
    )
    return dot_path

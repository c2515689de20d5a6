"""`mr.viz`: DOT text of the recorded graph (nodes, labels, shapes, leaves), residual
blocks collapsed and their two paths coloured, the error cases, and `draw`'s fallback."""

from __future__ import annotations

import re

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import models, nn
from minires.analysis.toy import toy_resnet


def node_lines(dot: str, prefix: str) -> list[str]:
    """The node statements whose id starts with ``prefix`` (n: op, t: leaf, b: block)."""
    return [ln for ln in dot.splitlines() if re.match(rf"\s+{prefix}\d+ \[", ln)]


def edges(dot: str) -> list[str]:
    return [ln for ln in dot.splitlines() if "->" in ln]


def label(line: str) -> str:
    return re.search(r'label="((?:[^"\\]|\\.)*)"', line).group(1)


def test_scalar_graph_nodes_labels_leaves():
    a = mr.tensor(2.0, requires_grad=True)
    b = mr.tensor(3.0, requires_grad=True)
    y = a * b + a
    dot = mr.viz.to_dot(y, params={"a": a, "b": b})
    assert dot.startswith("digraph") and dot.rstrip().endswith("}")
    ops = sorted(label(ln).split("\\n")[0] for ln in node_lines(dot, "n"))
    assert ops == ["Add", "Mul"]
    leaves = sorted(label(ln) for ln in node_lines(dot, "t"))
    assert leaves == ["a\\n()", "b\\n()"]
    # a feeds both ops: two edges leave it; 4 edges in all (a->Mul, b->Mul, a->Add, Mul->Add)
    assert len(edges(dot)) == 4
    assert mr.viz.to_dot(y).count("input\\n()") == 2  # unnamed leaves are inputs


def test_conv_net_one_node_per_op_with_output_shapes():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    x = mr.tensor(np.random.randn(2, 3, 8, 8).astype(np.float32), requires_grad=True)
    y = net(x).sum()
    dot = mr.viz.to_dot(y, params=dict(net.named_parameters()))
    ops = node_lines(dot, "n")
    assert len(ops) == len(list(mr.autograd.iter_graph(y))) == 4
    labels = {label(ln).split("\\n")[0]: label(ln).split("\\n")[1] for ln in ops}
    assert labels["Conv2d"] == "(2, 4, 4, 4)" and labels["ReLU"] == "(2, 4, 4, 4)"
    assert labels["Sum"] == "()"
    names = {label(ln).split("\\n")[0] for ln in node_lines(dot, "t")}
    assert names == {"0.weight", "0.bias", "1.weight", "1.bias", "input"}
    assert 'fillcolor="#ffe599"' in next(ln for ln in ops if "Sum" in ln)  # the output


def test_no_graph_is_refused():
    with pytest.raises(ValueError, match="no recorded graph"):
        mr.viz.to_dot(mr.tensor(np.ones(3), requires_grad=True))
    x = mr.tensor(np.ones(3), requires_grad=True)
    with mr.no_grad():
        y = x * 2
    with pytest.raises(ValueError, match="no recorded graph"):
        mr.viz.to_dot(y)
    with pytest.raises(TypeError, match="Tensor"):
        mr.viz.to_dot(np.ones(3))
    with pytest.raises(ValueError, match="trace"):
        mr.viz.to_dot(x * 2, collapse_blocks=True)


def _traced(model, shape):
    x = mr.tensor(np.random.randn(*shape).astype(np.float32), requires_grad=True)
    with mr.viz.trace(model) as tr:
        y = model(x)
    return y, tr


def test_collapse_blocks_draws_one_box_per_block():
    net = toy_resnet((2, 1), (4, 8))
    y, tr = _traced(net, (2, 1, 8, 8))
    assert [c.name for c in tr.calls] == ["layer1.0", "layer1.1", "layer2.0"]
    full = mr.viz.to_dot(y)
    dot = mr.viz.to_dot(y, collapse_blocks=True)
    boxes = node_lines(dot, "b")
    assert [label(b).split("\\n")[0] for b in boxes] == [
        "layer2.0: BasicBlock", "layer1.1: BasicBlock", "layer1.0: BasicBlock"]  # fmt: skip
    n_block_params = sum(p.data.size for p in net.layer1[0].parameters())
    assert f"{n_block_params:,} params" in label(boxes[2])
    assert "(2, 8, 4, 4)" in label(boxes[0])  # output shape of layer2.0
    # the ops outside blocks remain (stem conv/bn/relu, pool, flatten, fc ...)
    n_in_blocks = sum(int(re.search(r"(\d+) ops", label(b)).group(1)) for b in boxes)
    assert len(node_lines(dot, "n")) == len(node_lines(full, "n")) - n_in_blocks
    # a block's parameters are inside its box; chain: layer1.0 -> layer1.1 -> layer2.0
    assert "layer1.0.conv1.weight" not in dot and "conv1.weight" in dot  # stem conv kept
    ids = {label(b).split(":")[0]: b.split()[0] for b in boxes}
    assert f"  {ids['layer1.0']} -> {ids['layer1.1']};" in dot
    assert f"  {ids['layer1.1']} -> {ids['layer2.0']};" in dot
    for b in ("layer1.0", "layer1.1", "layer2.0"):  # the trace left no wrappers behind
        blk = net.get_submodule(b)
        assert not {"forward", "residual", "shortcut"} & set(vars(blk))


def test_color_paths_identity_and_residual():
    ds = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
    blk = models.Bottleneck(4, 2, stride=2, downsample=ds, groups=2, base_width=64)
    y, _ = _traced(blk, (2, 4, 6, 6))
    dot = mr.viz.to_dot(y, color_paths=True)
    ops = node_lines(dot, "n")
    residual = [ln for ln in ops if "#fdd0a2" in ln]
    identity = [ln for ln in ops if "#c6dbef" in ln]
    assert len(residual) == 8  # conv-bn-relu, conv-bn-relu, conv-bn
    assert sorted(label(ln).split("\\n")[0] for ln in identity) == ["BatchNormTrain", "Conv2d"]
    merge = [ln for ln in ops if "identity + residual" in ln]
    assert len(merge) == 1 and label(merge[0]).startswith("Add")
    orange = [e for e in edges(dot) if mr.viz.RESIDUAL_COLOR in e]
    blue = [e for e in edges(dot) if mr.viz.IDENTITY_COLOR in e]
    # input -> 8 residual ops -> add: 9 orange; input -> conv -> bn -> add: 3 blue
    assert len(orange) == 9 and len(blue) == 3
    assert sum("F(x)" in e for e in orange) == 1 and sum("identity" in e for e in blue) == 1
    fork = [ln for ln in dot.splitlines() if "peripheries" in ln]
    assert len(fork) == 1 and "gradients" in fork[0] and fork[0].lstrip().startswith("t")
    assert "legend" in dot


def test_color_paths_identity_skip_and_forms():
    form_a = models.ResNeXtPaths.from_bottleneck(models.Bottleneck(8, 2, groups=2, base_width=64))
    y, tr = _traced(form_a, (2, 8, 4, 4))
    assert [c.kind for c in tr.calls] == ["ResNeXtPaths"]
    dot = mr.viz.to_dot(y, color_paths=True)
    blue = [e for e in edges(dot) if mr.viz.IDENTITY_COLOR in e]
    assert len(blue) == 1 and "identity" in blue[0]  # the bare skip x -> add
    # 2 paths x 7 ops + 1 add of the paths + bn3 = 16 residual ops
    assert sum("#fdd0a2" in ln for ln in node_lines(dot, "n")) == 16


def test_trace_blocks_by_name_and_errors():
    net = toy_resnet((1, 1), (4, 8))
    x = mr.tensor(np.random.randn(2, 1, 8, 8).astype(np.float32))
    with mr.viz.trace(net, blocks=["layer2"]) as tr:
        net(x)
    assert [c.name for c in tr.calls] == ["layer2"]
    with pytest.raises(ValueError, match="no module named"):
        with mr.viz.trace(net, blocks=["layer9"]):
            pass
    with pytest.raises(TypeError, match="nn.Module"):
        with mr.viz.trace(lambda t: t):
            pass


def test_draw_writes_dot_and_says_how_to_render(tmp_path, monkeypatch, capsys):
    x = mr.tensor(np.random.randn(3), requires_grad=True)
    y = F.relu(x) * 2
    p = mr.viz.draw(y, tmp_path / "g.dot")
    assert p == tmp_path / "g.dot" and p.read_text() == mr.viz.to_dot(y)
    monkeypatch.setattr(mr.viz, "_graphviz_missing", lambda: "no graphviz here")
    p = mr.viz.draw(y, tmp_path / "sub" / "g.svg")
    assert p == tmp_path / "sub" / "g.dot" and p.read_text().startswith("digraph")
    out = capsys.readouterr().out
    assert "no graphviz here" in out and "dot -Tsvg" in out and str(p) in out
    with pytest.raises(ValueError, match="unsupported"):
        mr.viz.draw(y, tmp_path / "g.jpg")
    with pytest.raises(ValueError, match="no recorded graph"):
        mr.viz.draw(x, tmp_path / "g.svg")


def test_draw_renders_with_graphviz(tmp_path):
    pytest.importorskip("graphviz", reason="graphviz Python package not installed")
    if mr.viz._graphviz_missing():
        pytest.skip(mr.viz._graphviz_missing())
    x = mr.tensor(np.random.randn(3), requires_grad=True)
    p = mr.viz.draw(x * 2, tmp_path / "g.svg")
    assert p.suffix == ".svg" and "<svg" in p.read_text()


def test_plot_draws_every_node_and_edge():
    matplotlib = pytest.importorskip("matplotlib", reason="matplotlib not installed")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blk = models.BasicBlock(3, 3)
    y, _ = _traced(blk, (2, 3, 4, 4))
    dot = mr.viz.to_dot(y, color_paths=True)
    fig = mr.viz.plot(y, color_paths=True)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    n_nodes = len(node_lines(dot, "[ntb]"))
    assert sum("\n" in t and "orange" not in t for t in texts) == n_nodes
    assert any(t.startswith("orange: residual path") for t in texts)  # the legend
    arrows = [c for c in ax.get_children() if type(c).__name__ == "Annotation"]
    assert len(arrows) == len(edges(dot))
    plt.close(fig)


def test_show_params_false_keeps_inputs_only():
    blk = models.BasicBlock(3, 3)
    y, _ = _traced(blk, (2, 3, 4, 4))
    dot = mr.viz.to_dot(y, show_params=False)
    leaves = node_lines(dot, "t")
    assert len(leaves) == 1 and label(leaves[0]).startswith("input")
    assert len(edges(dot)) == len(edges(mr.viz.to_dot(y))) - 6  # 6 parameter edges gone


def test_shapes_come_from_the_nodes_not_from_tensors():
    """Nodes hold no input Tensors (``node.inputs[i]`` is None, a leaf Tensor or the
    producing Node): every op's output shape in the drawing is the node's own record."""
    from minires.autograd import Node

    blk = models.BasicBlock(3, 3)
    x = mr.tensor(np.random.randn(2, 3, 4, 4).astype(np.float32), requires_grad=True)
    y = blk(x)
    nodes = list(mr.autograd.iter_graph(y))
    assert all(not isinstance(i, mr.Tensor) or i.grad_fn is None
               for n in nodes for i in n.inputs)  # fmt: skip
    assert any(isinstance(i, Node) for n in nodes for i in n.inputs)
    for n in nodes:
        assert mr.viz._out_shape(n) == tuple(n.shape)
    dot = mr.viz.to_dot(y, params=dict(blk.named_parameters()))
    assert "2x3x4x4" in dot or "(2, 3, 4, 4)" in dot

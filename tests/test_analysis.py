"""minires.analysis: residual gradient decomposition, gradient flow, lesion, paths, and
the `minires explain` command."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import minires as mr
from minires import analysis as A
from minires import models, nn
from minires.analysis.toy import toy_resnet
from minires.data.digits import load_digits


@pytest.fixture(autouse=True, scope="module")
def _numpy_backend_one_blas_thread():
    """Tiny shapes: the NumPy reference kernels with one BLAS thread are the fastest and
    do not oversubscribe a busy 2-core machine."""
    previous = mr.get_backend()
    mr.set_backend("numpy")
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:  # pragma: no cover
        limit = contextlib.nullcontext()
    with limit:
        yield
    mr.set_backend(previous)


def _batch(shape=(8, 3, 8, 8), dtype=np.float64, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype), rng.integers(0, classes, shape[0])


# -- decomposition ----------------------------------------------------------------------


def test_decomposition_sums_to_backward_on_cifar_resnet20():
    model = models.resnet20().double()
    x, y = _batch()
    d = A.decompose(model, x, y)  # a^0 (after the stem) .. output of the last block
    assert d.l1 == 0 and d.l2 == 9 and len(d.blocks) == 9
    assert "option A" in d.shortcuts and d.parameter_free
    assert d.full.shape == (8, 16, 8, 8) and d.identity.shape == d.full.shape
    assert d.relative_error < 1e-10, d
    assert d.identity_check_error < 1e-10 * np.abs(d.identity).max(), d
    assert d.forward_error < 1e-12
    # both terms are really there: neither is negligible
    assert d.norm_identity > 1e-3 * d.norm_full and d.norm_residual > 1e-3 * d.norm_full
    # every intermediate boundary also sums
    assert len(d.per_boundary) == 10
    assert max(r["max_error"] for r in d.per_boundary) < 1e-10 * d.norm_full

    # a pair inside one stage: identity shortcuts only (boundaries may be block names)
    d2 = A.decompose(model, x, y, l1="layer1.1", l2=3)
    assert (d2.l1, d2.l2) == (1, 3)
    assert d2.shortcuts == ["identity", "identity"]
    assert d2.relative_error < 1e-10 and d2.identity_check_error < 1e-12


def test_decomposition_on_bottleneck_stack_with_projection():
    stack = nn.Sequential(
        models.Bottleneck(8, 4, stride=2, downsample=nn.Sequential(
            models.conv1x1(8, 16, stride=2), nn.BatchNorm2d(16))),
        models.Bottleneck(16, 4),
        models.Bottleneck(16, 4, groups=2, base_width=32),
    ).double()  # fmt: skip
    x, _ = _batch((4, 8, 6, 6))
    d = A.decompose(stack, x)  # target None: a fixed random projection of the output
    assert d.shortcuts == ["projection", "identity", "identity"]
    assert not d.parameter_free
    assert d.full.shape == (4, 8, 6, 6)
    assert d.relative_error < 1e-10, d
    assert d.identity_check_error < 1e-10 * np.abs(d.identity).max()
    assert -1.0 <= d.cosine <= 1.0


class PreActBlock(nn.Module):
    """a + F(a) with no activation after the add (He et al. 2016's form)."""

    has_skip = True

    def __init__(self, c):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c), nn.Conv2d(c, c, 3, padding=1, bias=False)

    def residual(self, x):
        return self.conv2(self.bn2(self.conv1(self.bn1(x).relu())).relu())

    def shortcut(self, x):
        return x

    def forward(self, x):
        return self.residual(x) + self.shortcut(x)


def test_preactivation_identity_term_is_exactly_grad_at_l2():
    """d loss/d a^l1 = d loss/d a^l2 . (1 + d/d a^l1 sum F): the identity term is
    d loss/d a^l2 itself, with no weight in between."""
    stack = nn.Sequential(*[PreActBlock(4) for _ in range(4)]).double()
    x, _ = _batch((3, 4, 5, 5))
    d = A.decompose(stack, x, l1=0, l2=4)
    np.testing.assert_array_equal(d.identity, d.grad_l2)
    assert d.identity_equals_grad_l2
    np.testing.assert_allclose(d.identity + d.residual, d.full, rtol=0, atol=1e-12)
    assert d.identity_check_error < 1e-13


def _option_a_transpose(g: np.ndarray, in_channels: int) -> np.ndarray:
    """The backward of option A (subsample by 2, zero-pad channels), written out: the
    gradient of the original channels, put back at the kept positions."""
    n, _, h, w = g.shape
    out = np.zeros((n, in_channels, 2 * h, 2 * w), g.dtype)
    out[:, :, ::2, ::2] = g[:, :in_channels]
    return out


def test_preact_resnet_identity_term_is_literally_the_upstream_gradient():
    """In the zoo's pre-activation net: over a stage's identity units I == d loss/d a^l2
    bit for bit and I + R == the backward's gradient; across stages I is option A's
    transpose of it, exactly."""
    mr.manual_seed(0)
    model = models.preact_resnet20().double()
    x, y = _batch()
    for l1, l2 in ((0, 3), (4, 6), (7, 9), (1, 2)):  # identity units only
        d = A.decompose(model, x, y, l1=l1, l2=l2)
        assert set(d.shortcuts) == {"identity"}
        np.testing.assert_array_equal(d.identity, d.grad_l2)
        assert d.identity_equals_grad_l2 and d.identity_ratio == 1.0
        np.testing.assert_allclose(d.identity + d.residual, d.full, rtol=0,
                                   atol=1e-12 * np.abs(d.full).max())  # fmt: skip
        assert d.identity_check_error == 0.0 and d.norm_residual > 0.1 * d.norm_identity
    d = A.decompose(model, x, y)  # a^0 .. a^9, option A at layer2.0 and layer3.0
    assert d.shortcuts.count("option A") == 2 and d.parameter_free
    np.testing.assert_array_equal(
        d.identity, _option_a_transpose(_option_a_transpose(d.grad_l2, 32), 16)
    )
    assert d.relative_error < 1e-12 and d.identity_ratio < 1
    norms = [r["norm_identity"] for r in d.per_boundary]  # flat within a stage
    assert norms[0] == norms[3] and norms[4] == norms[6] and norms[7] == norms[9]


def test_post_activation_identity_term_is_masked_by_the_relus():
    """The contrast: in resnet20 the identity path crosses a ReLU after every add, so over
    the same identity-shortcut stage I is a masked, smaller copy of d loss/d a^l2."""
    mr.manual_seed(0)
    x, y = _batch()
    d = A.decompose(models.resnet20().double(), x, y, l1=0, l2=3)
    assert set(d.shortcuts) == {"identity"} and not d.identity_equals_grad_l2
    assert d.identity_ratio < 0.95 and d.relative_error < 1e-12
    changed = d.identity != d.grad_l2
    assert np.all(d.identity[changed] == 0)  # masked elements are zeroed, the rest pass


def test_preact_bottleneck_decomposition_across_projections():
    """Bottleneck nets: the first unit of each stage projects the pre-activated input
    (1x1 conv): the split still sums exactly, it is not weight-free; the literal formula
    holds over the identity units after it."""
    mr.manual_seed(0)
    model = models.preact_resnet(29, bottleneck=True).double()  # 3 units per stage
    x, y = _batch((4, 3, 8, 8))
    d = A.decompose(model, x, y)
    assert d.shortcuts == ["projection", "identity", "identity"] * 3
    assert not d.parameter_free and d.relative_error < 1e-12
    assert d.identity_check_error < 1e-12 * np.abs(d.identity).max()
    d = A.decompose(model, x, y, l1=4, l2=6)  # layer2.1 .. layer2.2
    assert d.blocks == ["layer2.1", "layer2.2"]
    np.testing.assert_array_equal(d.identity, d.grad_l2)
    assert d.relative_error < 1e-12


def test_cosine_reads_na_where_a_term_is_exactly_zero():
    x, y = _batch()
    d = A.decompose(models.preact_resnet20().double(), x, y, l1=6)
    last = d.table().splitlines()[-1]
    assert last.split()[0] == "9" and "n/a (R=0)" in last
    assert "nan" not in d.table() and "nan" not in str(d)
    p = A.decompose(models.plain20().double(), x, y, l1=6)
    assert "n/a (I = 0" in str(p) and "nan" not in p.table()
    assert np.isnan(p.cosine)  # the value itself stays undefined


def test_compare_and_plot_decompositions(tmp_path):
    x, y = _batch((4, 3, 8, 8))
    ds = {
        "pre": A.decompose(models.preact_resnet(8).double(), x, y),
        "post": A.decompose(models.resnet20().double(), x, y, l1=6),
    }
    text = A.compare_decompositions(ds)
    assert len(text.splitlines()) == 2 + 4 and "pre" in text and "post" in text
    A.plot_decompositions(ds, path=tmp_path / "d.png", title="t")
    assert (tmp_path / "d.png").stat().st_size > 0
    with pytest.raises(ValueError, match="different numbers of boundaries"):
        A.compare_decompositions(
            {"a": ds["pre"], "b": A.decompose(models.resnet20().double(), x, y)}
        )


class LeakyBlock(models.BasicBlock):
    """Sneaks in a third path that is neither residual() nor shortcut()."""

    def forward(self, x):
        return self.relu(self.residual(x) + self.shortcut(x)) + x * 0.5


def test_sum_check_can_fail():
    """The check compares against the model's own backward, so a gradient path the
    decomposition does not know about shows up as an error."""
    mr.manual_seed(0)
    stack = nn.Sequential(LeakyBlock(4, 4), LeakyBlock(4, 4)).double()
    x, _ = _batch((2, 4, 4, 4))
    d = A.decompose(stack, x)
    assert d.relative_error > 1e-2


def test_decomposition_leaves_model_unchanged_and_handles_plain_nets():
    model = models.plain20().double()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x, y = _batch()
    d = A.decompose(model, x, y, l1=2, l2=5)
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())
    assert model.training
    # no skips: no identity term, the residual (= only) term is the whole gradient
    assert d.shortcuts == ["none"] * 3
    assert d.norm_identity == 0.0 and np.isnan(d.cosine)
    assert d.relative_error < 1e-12
    with pytest.raises(ValueError, match="l1"):
        A.decompose(model, x, y, l1=5, l2=5)


# -- gradient flow ----------------------------------------------------------------------


def test_gradient_flow_table_shape():
    model = models.resnet20()
    x, y = _batch(dtype=np.float32)
    f = A.gradient_flow(model, x, y, name="resnet20")
    assert f.grad_in.shape == (9,) and f.grad_out.shape == (9,) and f.rms_in.shape == (9,)
    assert len(f.conv_names) == 19 and f.conv_grad.shape == (19,)
    assert f.blocks[0] == "layer1.0" and f.blocks[-1] == "layer3.2"
    assert np.all(f.grad_in > 0) and np.all(f.conv_grad > 0)
    assert len(f.rows()) == 9 and set(f.rows()[0]) >= {"block", "grad_in", "has_skip"}
    # the gradient leaving block k is the one entering block k+1
    np.testing.assert_allclose(f.grad_out[:-1], f.grad_in[1:], rtol=1e-6)


def test_gradient_spread_depth56_plain_is_much_wider_than_residual():
    x, y = _batch(dtype=np.float32)
    mr.manual_seed(0)
    res = A.gradient_flow(models.resnet56(), x, y, name="resnet56")
    mr.manual_seed(0)
    plain = A.gradient_flow(models.plain56(), x, y, name="plain56")
    assert plain.spread >= 10 * res.spread, (res, plain)
    # and it is explosion toward the input, not vanishing (batchnorm, train mode)
    assert plain.first_last_ratio > 100


def test_compare_gradient_flow_with_training_steps(tmp_path):
    xs, ys = load_digits("train")
    batches = [(xs[i : i + 32], ys[i : i + 32]) for i in range(0, 96, 32)]
    mr.manual_seed(0)
    nets = {"res": toy_resnet((2, 2)), "plain": toy_resnet((2, 2), plain=True)}
    out = tmp_path / "flow.png"
    comp = A.compare_gradient_flow(nets, xs[:16], ys[:16], train_batches=batches, steps=2,
                                   path=str(out))  # fmt: skip
    assert [(f.name, f.phase) for f in comp.flows] == [
        ("res", "init"), ("plain", "init"), ("res", "step 2"), ("plain", "step 2")
    ]  # fmt: skip
    assert len(comp.rows()) == 4 * 4 and len(comp.summary_rows()) == 4
    assert "first/last" in str(comp)
    assert out.exists() and out.stat().st_size > 1000


def test_strip_batchnorm():
    m = A.strip_batchnorm(toy_resnet((1, 1)))
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in m.modules())
    x, y = _batch((4, 1, 8, 8), dtype=np.float32)
    assert A.gradient_flow(m, x, y).grad_in.shape == (2,)


# -- lesion -----------------------------------------------------------------------------


def _train(model, steps, seed=0):
    """SGD on normalised digits; returns (train images, test images, test labels)."""
    xs, ys = load_digits("train")
    mean, std = xs.mean(), xs.std()
    xs = (xs - mean) / std
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(steps):
        idx = rng.choice(len(xs), 64, replace=False)
        batches.append((xs[idx], ys[idx]))
    A.train_steps(model, batches, steps, lr=0.05)
    xt, yt = load_digits("test")
    return xs, (xt - mean) / std, yt


def test_lesion_trained_tiny_residual_net_stays_far_above_chance():
    mr.manual_seed(0)
    model = toy_resnet((3, 3, 3), (8, 16, 32))  # resnet20's layout, narrower
    xs, xt, yt = _train(model, 100)
    result = A.lesion_study(model, xt, yt, name="toy resnet", recalibrate=xs[:512])
    assert result.baseline > 0.85 and result.baseline_recalibrated > 0.85, result
    assert len(result.rows) == 9
    kept = [r for r in result.rows if not r["downsampling"]]
    assert len(kept) == 7
    # chance is 0.1. With the batchnorm statistics re-estimated for the lesioned net,
    # every deletion keeps most of the accuracy; as stored (Veit's protocol) most do too
    # - the first block, right after the one-conv stem, suffers most from stale BN stats.
    assert min(r["accuracy_recalibrated"] for r in kept) > 0.6, result
    assert np.median([r["accuracy"] for r in kept]) > 0.85, result
    assert "BN re-est." in str(result)

    mr.manual_seed(0)
    plain = toy_resnet((3, 3), plain=True)
    _train(plain, 20)
    broken = A.lesion_study(plain, xt, yt, name="toy plain")
    assert all(r["accuracy"] < 0.2 for r in broken.rows), broken  # the path is cut
    assert "breaks the only path" in str(broken)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    A.recalibrated_accuracy(model, xt, yt, xs[:64])
    assert all(np.array_equal(state[k], v) for k, v in model.state_dict().items())


# -- paths ------------------------------------------------------------------------------


def test_path_length_distribution():
    c = A.path_length_distribution(54)
    assert c.shape == (55,) and c.sum() == 2.0**54 and c[27] == c.max()


def test_path_gradients_decay_with_length():
    mr.manual_seed(0)
    model = toy_resnet((4, 4))
    x, y = _batch((8, 1, 8, 8), dtype=np.float64)
    pg = A.path_gradients(model.double(), x, y, samples=3)
    assert pg.n == 8 and pg.lengths.tolist() == list(range(9))
    assert pg.per_path[0] > pg.per_path[-1]
    assert 0 < pg.decay_per_block < 1
    np.testing.assert_allclose(pg.total_fraction.sum(), 1.0)
    lo, hi = pg.effective_range()
    assert 0 <= lo <= pg.peak_length <= hi <= 8
    # length 0 is the all-shortcut path: exactly the identity term of the decomposition
    d = A.decompose(model, x, y)
    assert np.isclose(pg.per_path[0], d.norm_identity, rtol=1e-10)
    with pytest.raises(ValueError, match="residual net"):
        A.path_gradients(toy_resnet((1, 1), plain=True), x[:, :, :, :].astype(np.float32), y)


# -- CLI --------------------------------------------------------------------------------


def test_explain_command(tmp_path, capsys):
    from minires.cli import main

    code = main(["explain", "--depth", "8", "--steps", "2", "--batch-size", "16",
                 "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "max |I + R - full|" in out and "first/last" in out
    assert (tmp_path / "gradient_flow.png").exists()
    assert (tmp_path / "decomposition.png").exists()
    # leads with the pre-activation net, where I is the upstream gradient exactly
    assert out.index("preact_resnet8") < out.index("resnet8 (He et al. 2015)")
    assert "I == dσ/da^1 exactly: True" in out and "ReLU masks" in out
    assert "nan" not in out.split("3. Gradient norm")[0]
    for bad, name in ((["--depth", "9"], "--depth"), (["--lr", "nan"], "--lr")):
        with pytest.raises(SystemExit) as exit_info:  # refused by the parser, as argparse
            main(["explain", *bad])
        assert exit_info.value.code == 2 and name in capsys.readouterr().err


def test_block_discovery_on_imagenet_model():
    blocks = A.find_blocks(models.resnet18(num_classes=10))
    assert [n for n, _ in blocks][:3] == ["layer1.0", "layer1.1", "layer2.0"]
    assert [A.shortcut_kind(b) for _, b in blocks] == [
        "identity", "identity", "projection", "identity",
        "projection", "identity", "projection", "identity",
    ]  # fmt: skip


def test_decomposition_on_imagenet_resnet18_across_a_projection():
    mr.manual_seed(0)
    model = models.resnet18(num_classes=10).double()
    x, y = _batch((2, 3, 32, 32))
    d = A.decompose(model, x, y, l1=1, l2=4)  # layer1.1 .. layer2.1, layer2.0 projects
    assert d.shortcuts == ["identity", "projection", "identity"]
    assert d.relative_error < 1e-10, d
    assert d.identity_check_error < 1e-10 * np.abs(d.identity).max()

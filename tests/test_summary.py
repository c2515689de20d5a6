"""mr.summary and `minires summary`: counts against torchvision's published numbers and
the ResNeXt paper's Table 1."""

from __future__ import annotations

import time

import numpy as np
import pytest

import minires as mr
from minires import models as M
from minires import nn
from minires.cli import main as cli_main
from minires.commands.summary import main as summary_main
from minires.summary import ModelSummary, compare

# torchvision model cards: (params, GFLOPS = multiply-adds of one 224x224 image)
TORCHVISION = {
    "resnet18": (11_689_512, 1.814),
    "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514),
    "resnext50_32x4d": (25_028_904, 4.230),
    "resnext101_32x8d": (88_791_336, 16.414),
    "resnext101_64x4d": (83_455_272, 15.460),
    "wide_resnet50_2": (68_883_240, 11.398),
}
CIFAR_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


def summarize(name: str, **kwargs) -> ModelSummary:
    with M.no_init():
        model = M.get_model(name)
    return mr.summary(model, M.input_shape_for(name), name=name, **kwargs)


def cifar_macs(depth: int, num_classes: int = 10) -> int:
    """He et al.'s CIFAR net by hand: 3x3 convs at 32/16/8 pixels with 16/32/64 channels."""
    n = (depth - 2) // 6
    total = 32 * 32 * 16 * 3 * 9  # conv1
    c_in = 16
    for c, hw in ((16, 32), (32, 16), (64, 8)):
        total += hw * hw * c * c_in * 9  # first conv of the stage (maybe strided)
        total += (2 * n - 1) * hw * hw * c * c * 9
        c_in = c
    return total + 64 * num_classes


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_imagenet_counts_match_torchvision(name):
    params, gmacs = TORCHVISION[name]
    s = summarize(name)
    assert s.total_params == params
    assert abs(s.total_macs / 1e9 - gmacs) / gmacs < 0.005
    assert s.input_shape == (3, 224, 224) and s.output_shape == (1, 1000)


@pytest.mark.parametrize("depth", list(CIFAR_PARAMS))
@pytest.mark.parametrize("kind", ["resnet", "plain"])
def test_cifar_counts(kind, depth):
    s = summarize(f"{kind}{depth}")
    assert s.total_params == CIFAR_PARAMS[depth]
    assert s.total_macs == cifar_macs(depth)
    assert s.input_shape == (3, 32, 32) and s.output_shape == (1, 10)


def test_resnet50_layers_and_stages():
    s = summarize("resnet50")
    assert s.total_params == 25_557_032 and s.total_macs == 4_089_184_256
    assert s.weight_params == 25_503_912  # what the ResNeXt paper's "25.5M" counts
    conv1 = s.layers[0]
    assert (conv1.name, conv1.type, conv1.output_shape) == ("conv1", "Conv2d", (1, 64, 112, 112))
    assert conv1.params == 9408 and conv1.macs == 112 * 112 * 64 * 3 * 49
    fc = s.layers[-1]
    assert (fc.name, fc.params, fc.macs) == ("fc", 2_049_000, 2_048_000)
    assert [st.name for st in s.stages] == ["conv1", "conv2", "conv3", "conv4", "conv5", "head"]
    assert [st.output_size for st in s.stages] == ["112x112", "56x56", "28x28", "14x14", "7x7",
                                                   "1x1"]  # fmt: skip
    assert s.stages[1].modules == ["maxpool", "layer1"]
    assert s.stages[1].description == ["3x3 max pool, stride 2", "[1x1, 64; 3x3, 64; 1x1, 256] x3"]
    assert sum(st.params for st in s.stages) == s.total_params
    assert sum(st.macs for st in s.stages) == s.total_macs
    text = str(s)
    assert "layer4.2.conv3" in text and "4,089,184,256" in text and "mult-adds" in text


def test_dry_run_matches_a_real_forward_and_leaves_the_model_alone():
    model = M.cifar_resnet(8)
    model.train()
    model.layer2.eval()
    state = {k: v.copy() for k, v in model.state_dict().items()}
    backend = mr.get_backend()
    dry = mr.summary(model, (3, 16, 16))
    real = mr.summary(model, (3, 16, 16), dry_run=False)
    assert [(r.name, r.output_shape, r.macs) for r in dry.layers] == [
        (r.name, r.output_shape, r.macs) for r in real.layers
    ]
    assert model.training and not model.layer2.training and model.layer3[0].bn1.training
    assert int(model.bn1.num_batches_tracked) == 0
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert mr.get_backend() == backend
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])
    y = model(mr.tensor(np.random.randn(2, 3, 8, 8).astype(np.float32)))
    assert np.all(np.isfinite(y.data)) and np.abs(y.data).sum() > 0  # real kernels are back


def test_any_module_and_input_checks():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    s = mr.summary(net, (1, 4, 4))
    assert s.total_params == 4 * 9 + 4 + 64 * 3 + 3
    assert s.total_macs == 4 * 4 * 4 * 9 + 64 * 3 and s.output_shape == (1, 3)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        mr.summary(net, (1, 1, 4, 4))
    with pytest.raises(TypeError, match="nn.Module"):
        mr.summary(lambda x: x, (1, 4, 4))
    with pytest.raises(ValueError, match="conv2d"):  # a shape error surfaces as in a forward
        mr.summary(net, (2, 4, 4))
    assert all("forward" not in m.__dict__ for m in net.modules())


def test_summary_is_fast():
    for name in ("resnet50", "resnext101_32x8d", "resnet152"):
        start = time.perf_counter()
        summarize(name)
        assert time.perf_counter() - start < 2.0, name


def test_compare_reproduces_resnext_table1():
    text = compare([summarize("resnet50"), summarize("resnext50_32x4d")])
    for line in (
        "7x7, 64, stride 2",
        "3x3 max pool, stride 2",
        "[1x1, 64; 3x3, 64; 1x1, 256] x3",
        "[1x1, 128; 3x3, 128, C=32; 1x1, 256] x3",
        "[1x1, 256; 3x3, 256, C=32; 1x1, 512] x4",
        "[1x1, 512; 3x3, 512, C=32; 1x1, 1024] x6",
        "[1x1, 1024; 3x3, 1024, C=32; 1x1, 2048] x3",
        "global average pool, 1000-d fc, softmax",
    ):
        assert line in text, line
    params_row = next(r for r in text.splitlines() if r.startswith("# params."))
    flops_row = next(r for r in text.splitlines() if r.startswith("FLOPs"))
    assert params_row.split()[2:] == ["25.5", "x", "10^6", "25.0", "x", "10^6"]
    assert flops_row.split()[1:] == ["4.1", "x", "10^9", "4.2", "x", "10^9"]
    for size in ("112x112", "56x56", "28x28", "14x14", "7x7"):
        assert size in text


def test_cli_side_by_side(capsys):
    assert cli_main(["summary", "resnet50", "resnext50_32x4d"]) == 0
    out = capsys.readouterr().out
    assert "ResNet-50" in out and "ResNeXt-50 (32x4d)" in out
    assert "[1x1, 128; 3x3, 128, C=32; 1x1, 256] x3" in out
    assert "25,557,032" in out and "25,028,904" in out


def test_cli_single_model_and_templates(capsys):
    assert summary_main(["resnet20"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2.conv2" in out and "269,722" in out and "[3x3, 16; 3x3, 16] x3" in out
    assert summary_main(["--templates"]) == 0
    out = capsys.readouterr().out
    for name in ("1x64d", "2x40d", "4x24d", "8x14d", "32x4d"):
        assert f"ResNeXt-50 ({name})" in out
    assert "25,557,032" in out and "25,028,904" in out and "4,230,479,872" in out
    assert summary_main(["resnet50", "--input", "3,160,160"]) == 0
    assert "(1, 2048, 5, 5)" in capsys.readouterr().out
    assert summary_main(["resnet51"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert summary_main([]) == 2

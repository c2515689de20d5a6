"""nn.Module plumbing, layers against torch, and mr.save/mr.load."""

from __future__ import annotations

import os

import numpy as np
import pytest

import minires as mr
import minires.functional as F
from minires import nn


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def test_names_parameters_buffers():
    m = small_net()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["0.weight", "1.weight", "1.bias", "6.weight", "6.bias"]
    assert [n for n, _ in m.named_buffers()] == [
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert [n for n, _ in m.named_modules()][:3] == ["", "0", "1"]
    assert len(list(m.children())) == 7
    assert m.get_submodule("1") is m[1]


def test_train_eval_and_zero_grad():
    m = small_net()
    x = mr.tensor(np.random.randn(2, 3, 6, 6).astype(np.float32))
    F.cross_entropy(m(x), np.array([0, 1])).backward()
    assert all(p.grad is not None for p in m.parameters())
    assert int(m[1].num_batches_tracked) == 1
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.eval()
    assert not m.training and not m[1].training
    before = m[1].running_mean.copy()
    m(x)
    np.testing.assert_array_equal(before, m[1].running_mean)  # eval leaves stats alone


def test_state_dict_roundtrip_keeps_dtype_and_copies():
    a, b = small_net(), small_net()
    b.double()
    sd = a.state_dict()
    sd["0.weight"][...] = 0  # a copy: the model is untouched
    assert not np.all(a[0].weight.data == 0)
    b.load_state_dict(a.state_dict())
    assert b[0].weight.dtype == np.float64
    np.testing.assert_allclose(b[0].weight.data, a[0].weight.data)
    assert b[1].num_batches_tracked.dtype == np.int64


def test_load_state_dict_non_strict():
    m = small_net()
    sd = m.state_dict()
    del sd["6.bias"]
    sd["extra"] = np.zeros(1)
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert missing == ["6.bias"] and unexpected == ["extra"]


def test_to_double_and_float():
    m = small_net().double()
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].running_var.dtype == np.float64
    assert m.float()[1].running_var.dtype == np.float32


def test_batchnorm_momentum_none_is_cumulative_average():
    bn = nn.BatchNorm2d(2, momentum=None)
    xs = [np.random.randn(4, 2, 3, 3).astype(np.float32) + i for i in range(3)]
    for x in xs:
        bn(mr.tensor(x))
    expected = np.mean([x.mean(axis=(0, 2, 3)) for x in xs], axis=0)
    np.testing.assert_allclose(bn.running_mean, expected, rtol=1e-5)


def test_layers_match_torch(torch):
    m = small_net().double()
    tm = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    ).double()
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    x = np.random.randn(3, 3, 7, 7)
    target = np.array([0, 1, 1])
    loss = F.cross_entropy(m(mr.tensor(x)), target)
    loss.backward()
    tloss = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(target))
    tloss.backward()
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-10)
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(m[1].running_var, tm[1].running_var.numpy(), rtol=1e-12)


def test_default_init_statistics():
    conv = nn.Conv2d(64, 64, 3)
    bound = 1 / np.sqrt(64 * 9)
    assert np.abs(conv.weight.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.9 * bound


# -- save / load ----------------------------------------------------------------------------------


def test_save_load_roundtrip(tmp_path):
    m = small_net()
    obj = {
        "model": m.state_dict(),
        "epoch": 3,
        "lr": 0.1,
        "name": "x",
        "hist": [1.0, 2.0],
        "nested": {"t": (1, None)},
        "state": {0: {"momentum": np.ones(2)}},
    }
    path = tmp_path / "ck.npz"
    mr.save(obj, path)
    back = mr.load(path)
    assert back["epoch"] == 3 and back["lr"] == 0.1 and back["name"] == "x"
    assert back["hist"] == [1.0, 2.0] and back["nested"]["t"] == (1, None)
    assert list(back["model"]) == list(obj["model"])
    assert list(back["state"]) == [0]  # int keys (optimizer state) survive
    for k, v in obj["model"].items():
        np.testing.assert_array_equal(back["model"][k], v)
        assert back["model"][k].dtype == v.dtype
    m2 = small_net()
    m2.load_state_dict(back["model"])


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "ck.npz"
    mr.save({"a": np.ones(3)}, path)

    class Boom:
        pass

    with pytest.raises(TypeError, match="cannot store a Boom"):
        mr.save({"a": np.zeros(3), "b": Boom()}, path)
    np.testing.assert_array_equal(mr.load(path)["a"], np.ones(3))  # old file intact
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_truncated_file_refused(tmp_path):
    path = tmp_path / "ck.npz"
    mr.save({"w": np.random.randn(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        mr.load(path)


def test_foreign_files_refused(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.ones(2))
    with pytest.raises(ValueError, match="not a minires checkpoint"):
        mr.load(foreign)
    text = tmp_path / "t.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        mr.load(text)
    with pytest.raises(FileNotFoundError):
        mr.load(tmp_path / "missing.npz")

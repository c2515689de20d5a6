"""minires.interop: .npz round trips, torch checkpoints in and out, refusal of a
checkpoint for another architecture."""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
import pytest

import minires as mr
from minires import interop
from minires import models as M


def logits(model, x: np.ndarray) -> np.ndarray:
    model.eval()
    with mr.no_grad():
        return model(mr.tensor(x)).data


def perturbed(model):
    """Non-default BN statistics so a forgotten buffer changes the logits."""
    rng = np.random.default_rng(0)
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b[...] = 0.1 * rng.standard_normal(b.shape)
        elif name.endswith("running_var"):
            b[...] = 1 + 0.2 * rng.random(b.shape)
    return model


def test_npz_round_trip(tmp_path):
    mr.manual_seed(0)
    src = perturbed(M.cifar_resnet(8))
    path = tmp_path / "r8.npz"
    interop.save_npz(src, path)
    mr.manual_seed(1)
    dst = interop.load_weights(M.cifar_resnet(8), path)
    for (k, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(logits(src, x), logits(dst, x))
    assert list(interop.load_npz(path)) == list(src.state_dict())


def test_wrong_architecture_is_refused_with_keys_and_shapes():
    state = M.resnet20().state_dict()
    with pytest.raises(ValueError) as err:
        interop.load_weights(M.resnet32(), state)
    msg = str(err.value)
    assert "does not fit this CifarResNet" in msg and "keys missing" in msg
    assert "layer1.3.conv1.weight" in msg and "... and" in msg  # long lists are cut
    with pytest.raises(ValueError, match=r"fc.weight: checkpoint \(10, 64\) vs model \(100, 64\)"):
        interop.load_weights(M.resnet20(num_classes=100), state)
    with M.no_init():
        resnet50, resnext50 = M.resnet50(), M.resnext50_32x4d()
    with pytest.raises(ValueError) as err:
        interop.load_weights(resnext50, resnet50.state_dict())
    msg = str(err.value)
    assert "shape mismatches" in msg
    assert "layer1.0.conv2.weight: checkpoint (64, 64, 3, 3) vs model (128, 4, 3, 3)" in msg
    # strict=False tolerates missing/unexpected keys, never shapes
    partial = OrderedDict((k, v) for k, v in state.items() if not k.startswith("fc."))
    interop.load_weights(M.resnet20(), partial, strict=False)
    with pytest.raises(ValueError, match="shape mismatches"):
        interop.load_weights(M.resnet20(num_classes=100), state, strict=False)


def test_dtype_of_the_model_is_kept():
    state = {k: v.astype(np.float64) if v.dtype.kind == "f" else v
             for k, v in M.cifar_resnet(8).state_dict().items()}  # fmt: skip
    model = interop.load_weights(M.cifar_resnet(8), state)
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_without_torch_the_message_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    path = tmp_path / "w.pth"
    path.write_bytes(b"not really")
    with pytest.raises(ImportError, match="pip install torch"):
        interop.load_torch(path)
    with pytest.raises(ImportError, match="needs PyTorch"):
        interop.to_torch(M.cifar_resnet(8))
    with pytest.raises(ValueError, match=r"\.npz"):
        interop.read_state_dict(tmp_path / "weights.h5")


def torch_cifar(torch, n: int):
    """He et al.'s CIFAR ResNet in plain torch, with torchvision's key names."""
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.stride, self.extra = stride, cout - cin

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            s = x[:, :, ::2, ::2] if self.stride == 2 else x
            return torch.relu(out + tnn.functional.pad(s, (0, 0, 0, 0, 0, self.extra)))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(16)
            cin = 16
            for i, (c, s) in enumerate(((16, 1), (32, 2), (64, 2))):
                blocks = [Block(cin, c, s)] + [Block(c, c, 1) for _ in range(1, n)]
                setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
                cin = c
            self.fc = tnn.Linear(64, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = self.layer3(self.layer2(self.layer1(x)))
            return self.fc(x.mean(dim=(2, 3)))

    return Net()


def test_torch_checkpoint_in_and_out(torch, tmp_path):
    torch.manual_seed(0)
    ref = torch_cifar(torch, 1).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.8, 1.2)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()

    # a training script's checkpoint: wrapped, saved from DataParallel ("module." prefix)
    path = tmp_path / "ckpt.pth"
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    torch.save(wrapped, path)
    model = interop.load_weights(M.cifar_resnet(8), path)
    np.testing.assert_allclose(logits(model, x), expected, rtol=1e-4, atol=1e-5)

    # and back: a dict torch's load_state_dict accepts (strict), giving the same logits
    fresh = torch_cifar(torch, 1).eval()
    fresh.load_state_dict(interop.to_torch(model))
    assert fresh.layer1[0].bn1.num_batches_tracked.dtype == torch.int64
    with torch.no_grad():
        np.testing.assert_allclose(fresh(torch.from_numpy(x)).numpy(), expected, rtol=1e-6)
    interop.save_torch(model, tmp_path / "out.pth")
    back = interop.load_torch(tmp_path / "out.pth")
    assert list(back) == list(model.state_dict())

    # torchvision-named ImageNet checkpoints: keys and shapes line up exactly
    with M.no_init():
        r18 = M.resnet18()
    sd = interop.to_torch(r18)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    assert interop.check_compatible(r18, sd) == []

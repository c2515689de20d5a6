"""nn.Sequential, nn.ModuleList, nn.ModuleDict: registration, indexing, bad entries, and
the warning for Modules hidden in a plain list."""

import numpy as np
import pytest

import minires as mr
from minires import nn


def _lin(i=2, o=3):
    return nn.Linear(i, o)


def test_modulelist_registers_children_for_params_state_dict_and_casts():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.paths = nn.ModuleList([_lin(), _lin()])

        def forward(self, x):
            return sum(p(x) for p in self.paths)

    net = Net()
    assert list(net.state_dict()) == [
        "paths.0.weight",
        "paths.0.bias",
        "paths.1.weight",
        "paths.1.bias",
    ]
    assert len(list(net.parameters())) == 4
    net.double()
    assert net.paths[1].weight.dtype == np.float64
    net.eval()
    assert not net.paths[0].training
    y = net(mr.tensor(np.ones((4, 2))))
    y.sum().backward()
    assert net.paths[0].weight.grad is not None and net.paths[1].weight.grad is not None


def test_modulelist_list_operations():
    a, b, c = _lin(), _lin(), _lin()
    ml = nn.ModuleList([a])
    ml.append(b).extend([c])
    assert len(ml) == 3 and ml[-1] is c and list(ml) == [a, b, c]
    assert isinstance(ml[1:], nn.ModuleList) and list(ml[1:]) == [b, c]
    del ml[0]
    assert list(ml) == [b, c] and [n for n, _ in ml.named_children()] == ["0", "1"]
    ml.insert(0, a)
    assert list(ml) == [a, b, c]
    ml[1] = c
    assert ml[1] is c
    with pytest.raises(IndexError, match="out of range for length 3"):
        ml[3]
    with pytest.raises(TypeError, match="entry 3 is a int"):
        ml.append(3)
    with pytest.raises(TypeError, match="not one Module"):
        ml.extend(_lin())


def test_moduledict():
    md = nn.ModuleDict({"a": _lin(), "b": _lin()})
    assert list(md) == ["a", "b"] and "a" in md and len(md) == 2
    assert list(md.state_dict())[0] == "a.weight"
    md["c"] = _lin()
    md.pop("a")
    assert list(md.keys()) == ["b", "c"]
    assert [k for k, _ in md.named_children()] == ["b", "c"]
    with pytest.raises(KeyError, match="without '.'"):
        md["x.y"] = _lin()
    with pytest.raises(TypeError, match="is a str"):
        md["z"] = "conv"


def test_sequential_refuses_non_modules():
    with pytest.raises(TypeError, match="entry 1 is a function"):
        nn.Sequential(_lin(), lambda x: x)


def test_plain_list_of_modules_warns():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.paths = [_lin(), _lin()]

    with pytest.warns(UserWarning, match="use nn.ModuleList"):
        net = Net()
    assert list(net.parameters()) == []


def test_delattr_unregisters():
    net = nn.Sequential(_lin())
    net.extra = _lin()
    del net.extra
    assert [n for n, _ in net.named_children()] == ["0"]

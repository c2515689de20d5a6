"""Activation modules with PyTorch's names, each a thin Module around one functional op:
``nn.Softmax``, ``nn.LogSoftmax``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.LeakyReLU``,
``nn.GELU``, ``nn.SiLU`` and ``nn.Softplus`` (``nn.ReLU`` lives in `minires.nn.layers`).
Every one keeps its input's shape and dtype."""

from __future__ import annotations

from minires import functional as F
from minires.functional._util import check_int, check_real
from minires.functional.elementwise import GELU_APPROXIMATIONS
from minires.functional.loss import legacy_softmax_dim
from minires.nn.module import Module
from minires.tensor import Tensor


class _SoftmaxNd(Module):
    """What `Softmax` and `LogSoftmax` share: ``dim`` (an int, or None for torch's legacy
    choice, with a warning at each call)."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        # an int (its range is checked against each input) or None
        self.dim = None if dim is None else check_int(dim, "dim", type(self).__name__)

    def _dim(self, x: Tensor) -> int:
        if self.dim is None:  # warns at the line calling the module (through __call__)
            return legacy_softmax_dim(type(self).__name__, x.ndim, stacklevel=5)
        return self.dim

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_SoftmaxNd):
    """softmax along ``dim``: exp(x) / sum(exp(x)) over that axis, as `F.softmax`."""

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self._dim(x))


class LogSoftmax(_SoftmaxNd):
    """log(softmax(x)) along ``dim``, as `F.log_softmax` (feeds `nn.NLLLoss`)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self._dim(x))


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(Module):
    """tanh(x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class LeakyReLU(Module):
    """x where positive, ``negative_slope * x`` elsewhere (`F.leaky_relu`). ``inplace=True``
    writes the result into the input (recorded in the graph as PyTorch does)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = check_real(negative_slope, "negative_slope", "LeakyReLU")
        self.inplace = bool(inplace)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    """x * Phi(x), Phi the standard normal CDF (`F.gelu`): exact (``approximate="none"``)
    or its tanh approximation (``approximate="tanh"``)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if not isinstance(approximate, str) or approximate not in GELU_APPROXIMATIONS:
            error = ValueError if isinstance(approximate, str) else TypeError
            raise error(
                f"GELU: approximate must be one of {GELU_APPROXIMATIONS}, got {approximate!r}"
            )
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x * sigmoid(x) (swish), `F.silu`. ``inplace=True`` writes the result into the input."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta, x itself where beta * x > threshold (`F.softplus`)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = check_real(beta, "beta", "Softplus")
        self.threshold = check_real(threshold, "threshold", "Softplus")

    def forward(self, x: Tensor) -> Tensor:
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

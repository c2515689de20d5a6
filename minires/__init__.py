"""minires: a from-scratch deep-learning engine on NumPy and Numba for seeing how ResNet
and ResNeXt work.

    import minires as mr
    import minires.functional as F
"""

from minires import analysis, data, functional, models, nn, optim, viz
from minires.autograd import Context, Function, enable_grad, is_grad_enabled, no_grad
from minires.backend import get_backend, set_backend, use_backend
from minires.functional import cat
from minires.gradcheck import GradcheckError, GradcheckResult, GradcheckWarning, gradcheck
from minires.random import manual_seed
from minires.serialization import load, save
from minires.summary import summary
from minires.tensor import Tensor, tensor

__version__ = "0.1.0"

__all__ = [
    "analysis",
    "Context",
    "Function",
    "GradcheckError",
    "GradcheckResult",
    "GradcheckWarning",
    "Tensor",
    "cat",
    "data",
    "enable_grad",
    "functional",
    "get_backend",
    "gradcheck",
    "is_grad_enabled",
    "load",
    "manual_seed",
    "models",
    "nn",
    "no_grad",
    "optim",
    "save",
    "set_backend",
    "summary",
    "tensor",
    "use_backend",
    "viz",
]

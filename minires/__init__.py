"""minires: a from-scratch deep-learning engine on NumPy and Numba for seeing how ResNet
and ResNeXt work.

    import minires as mr
    import minires.functional as F
"""

# _mpi_env first: under mpiexec it sizes each rank's Numba/BLAS thread pools before NumPy
# and Numba load.
from minires import _mpi_env, analysis, data, functional, models, nn, optim, viz  # noqa: F401
from minires.autograd import (
    Context,
    Function,
    enable_grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from minires.backend import get_backend, set_backend, use_backend
from minires.creation import (
    arange,
    from_numpy,
    full,
    ones,
    ones_like,
    rand,
    randn,
    zeros,
    zeros_like,
)
from minires.dtypes import (  # torch's dtype names: mr.float32, mr.long, ...
    bool,
    double,
    float,
    float32,
    float64,
    int,
    int8,
    int16,
    int32,
    int64,
    long,
    uint8,
)
from minires.functional import (
    cat,
    chunk,
    clone,
    isfinite,
    isnan,
    maximum,
    minimum,
    split,
    stack,
    where,
)
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
    "arange",
    "cat",
    "chunk",
    "clone",
    "data",
    "enable_grad",
    "from_numpy",
    "full",
    "functional",
    "get_backend",
    "gradcheck",
    "is_grad_enabled",
    "isfinite",
    "isnan",
    "load",
    "manual_seed",
    "maximum",
    "minimum",
    "models",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
    "rand",
    "randn",
    "save",
    "set_backend",
    "set_grad_enabled",
    "split",
    "stack",
    "summary",
    "tensor",
    "use_backend",
    "where",
    "zeros",
    "zeros_like",
    "viz",
    "float32",
    "float",
    "float64",
    "double",
    "int64",
    "long",
    "int32",
    "int",
    "int16",
    "int8",
    "uint8",
    "bool",
]

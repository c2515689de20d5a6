"""Readable NumPy reference kernels: the teaching version and the test oracle.

Every function of `kernels/INTERFACE.md` lives here, with the exact signature the
Numba backend (`kernels.jit`) also implements. Start with `conv.py` (im2col), then
`batchnorm.py`, `rownorm.py` (layer and group norm), `pool.py` and `elementwise.py`.
"""

from .batchnorm import (
    batch_norm_eval_backward,
    batch_norm_eval_forward,
    batch_norm_train_backward,
    batch_norm_train_forward,
)
from .conv import (
    conv2d_backward,
    conv2d_backward_input,
    conv2d_backward_weight,
    conv2d_forward,
)
from .elementwise import add, relu_backward, relu_forward
from .linear import linear_backward_input, linear_backward_weight, linear_forward
from .pool import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from .rownorm import row_norm_backward, row_norm_forward

__all__ = [
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "conv2d_backward",
    "batch_norm_train_forward",
    "batch_norm_train_backward",
    "batch_norm_eval_forward",
    "batch_norm_eval_backward",
    "max_pool2d_forward",
    "max_pool2d_backward",
    "avg_pool2d_forward",
    "avg_pool2d_backward",
    "relu_forward",
    "relu_backward",
    "add",
    "linear_forward",
    "linear_backward_input",
    "linear_backward_weight",
    "row_norm_forward",
    "row_norm_backward",
]

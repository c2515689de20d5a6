"""Every op of minires as a function on Tensors, each backed by one `Function` class with
a hand-written backward (``import minires.functional as F``, also ``mr.nn.functional``)."""

from minires.functional.conv import Conv2d, conv2d
from minires.functional.dropout import Dropout, dropout
from minires.functional.elementwise import (
    Abs,
    Add,
    Cast,
    Clamp,
    Div,
    Exp,
    Log,
    Mul,
    Neg,
    Pow,
    ReLU,
    Sigmoid,
    Sqrt,
    Sub,
    Tanh,
    abs,
    add,
    cast,
    clamp,
    div,
    exp,
    log,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sqrt,
    sub,
    tanh,
)
from minires.functional.linalg import Linear, MatMul, linear, matmul
from minires.functional.loss import (
    CrossEntropy,
    LogSoftmax,
    MSELoss,
    cross_entropy,
    log_softmax,
    mse_loss,
    softmax,
)
from minires.functional.norm import (
    BatchNormEval,
    BatchNormTrain,
    GroupNorm,
    LayerNorm,
    batch_norm,
    group_norm,
    layer_norm,
)
from minires.functional.pool import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    MaxPool2d,
    adaptive_avg_pool2d,
    avg_pool2d,
    max_pool2d,
)
from minires.functional.reduce import Max, Mean, Min, Sum, argmax, argmin, max, mean, min, sum
from minires.functional.shape import (
    Concat,
    GetItem,
    Pad,
    Reshape,
    Stack,
    Transpose,
    cat,
    flatten,
    getitem,
    pad,
    permute,
    reshape,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)

__all__ = [
    "Abs", "Add", "AdaptiveAvgPool2d", "AvgPool2d", "BatchNormEval", "BatchNormTrain", "Cast",
    "Clamp", "Concat", "Conv2d", "CrossEntropy", "Div", "Dropout", "Exp", "GetItem",
    "GroupNorm", "LayerNorm", "Linear", "Log", "LogSoftmax", "MSELoss", "MatMul", "Max",
    "MaxPool2d", "Mean", "Min", "Mul", "Neg", "Pad", "Pow", "ReLU", "Reshape", "Sigmoid",
    "Sqrt", "Stack", "Sub", "Sum", "Tanh", "Transpose",
    "abs", "adaptive_avg_pool2d", "add", "argmax", "argmin", "avg_pool2d", "batch_norm",
    "cast", "cat", "clamp", "conv2d", "cross_entropy", "div", "dropout", "exp", "flatten",
    "getitem", "group_norm", "layer_norm", "linear", "log", "log_softmax", "matmul", "max",
    "max_pool2d", "mean", "min", "mse_loss", "mul", "neg", "pad", "permute", "pow", "relu",
    "reshape", "sigmoid", "softmax", "sqrt", "squeeze", "stack", "sub", "sum", "tanh",
    "transpose", "unsqueeze",
]  # fmt: skip

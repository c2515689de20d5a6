"""Every op of minires as a function on Tensors, each backed by one `Function` class with
a hand-written backward (``import minires.functional as F``, also ``mr.nn.functional``)."""

from minires.functional.conv import Conv2d, conv2d
from minires.functional.elementwise import (
    Add,
    Cast,
    Div,
    Exp,
    Log,
    Mul,
    Neg,
    Pow,
    ReLU,
    Sigmoid,
    Sub,
    Tanh,
    add,
    cast,
    div,
    exp,
    log,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sub,
    tanh,
)
from minires.functional.linalg import Linear, MatMul, linear, matmul
from minires.functional.loss import CrossEntropy, LogSoftmax, cross_entropy, log_softmax, softmax
from minires.functional.norm import BatchNormEval, BatchNormTrain, batch_norm
from minires.functional.pool import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    MaxPool2d,
    adaptive_avg_pool2d,
    avg_pool2d,
    max_pool2d,
)
from minires.functional.reduce import Max, Mean, Sum, max, mean, sum
from minires.functional.shape import (
    Concat,
    GetItem,
    Pad,
    Reshape,
    Transpose,
    cat,
    flatten,
    getitem,
    pad,
    reshape,
    transpose,
)

__all__ = [
    "Add", "AdaptiveAvgPool2d", "AvgPool2d", "BatchNormEval", "BatchNormTrain", "Cast",
    "Concat", "Conv2d", "CrossEntropy", "Div", "Exp", "GetItem", "Linear", "Log",
    "LogSoftmax", "MatMul", "Max", "MaxPool2d", "Mean", "Mul", "Neg", "Pad", "Pow", "ReLU",
    "Reshape", "Sigmoid", "Sub", "Sum", "Tanh", "Transpose",
    "adaptive_avg_pool2d", "add", "avg_pool2d", "batch_norm", "cast", "cat", "conv2d",
    "cross_entropy", "div", "exp", "flatten", "getitem", "linear", "log", "log_softmax",
    "matmul", "max", "max_pool2d", "mean", "mul", "neg", "pad", "pow", "relu", "reshape",
    "sigmoid", "softmax", "sub", "sum", "tanh", "transpose",
]  # fmt: skip

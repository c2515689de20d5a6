"""Seeing what the skip connections do to the gradient - the reason minires exists.

    from minires import analysis
    d = analysis.decompose(model, x, y, l1=0, l2=9)     # identity + residual terms
    print(d)                                           # norms, cosine, sum check
    comp = analysis.compare_gradient_flow({"resnet56": r, "plain56": p}, x, y)
    print(comp)                                        # gradient spread by depth
    analysis.lesion_study(trained, x_test, y_test)     # Veit et al.: delete one block
    analysis.path_gradients(model, x, y)               # ensemble of paths

Modules: `decomposition` (identity vs residual gradient), `gradient_flow` (per-block and
per-conv gradient norms, residual vs plain), `lesion` (delete blocks), `paths` (path
lengths and the gradient they carry). All of them work on any model built from blocks
that expose ``residual(x)``, ``shortcut(x)`` and ``has_skip`` (see `find_blocks`).
"""

from minires.analysis._blocks import BlockLinearisation, find_blocks, is_block, shortcut_kind
from minires.analysis.decomposition import (
    Decomposition,
    compare_decompositions,
    decompose,
    plot_decompositions,
)
from minires.analysis.gradient_flow import (
    GradientFlow,
    GradientFlowComparison,
    compare_gradient_flow,
    gradient_flow,
    plot_gradient_flow,
    strip_batchnorm,
    train_steps,
)
from minires.analysis.lesion import (
    LesionResult,
    evaluate,
    lesion_study,
    plot_lesion,
    recalibrated_accuracy,
)
from minires.analysis.paths import (
    PathGradients,
    path_gradients,
    path_length_distribution,
    plot_paths,
)
from minires.analysis.toy import ToyResNet, toy_resnet

__all__ = [
    "BlockLinearisation",
    "Decomposition",
    "GradientFlow",
    "GradientFlowComparison",
    "LesionResult",
    "PathGradients",
    "compare_decompositions",
    "compare_gradient_flow",
    "decompose",
    "evaluate",
    "find_blocks",
    "gradient_flow",
    "is_block",
    "lesion_study",
    "path_gradients",
    "path_length_distribution",
    "plot_decompositions",
    "plot_gradient_flow",
    "plot_lesion",
    "plot_paths",
    "recalibrated_accuracy",
    "shortcut_kind",
    "strip_batchnorm",
    "toy_resnet",
    "ToyResNet",
    "train_steps",
]

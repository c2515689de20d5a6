"""Benchmarks of grouped vs dense vs depthwise convolution on CPU.

ResNeXt's grouped 3x3 conv keeps ResNet's block FLOPs but runs slower: this package
measures by how much, and why (arithmetic intensity), for minires' Numba kernels, its
NumPy reference and PyTorch (NCHW and channels_last), each backend in its own process.

    python -m minires.benchmarks --quick        # or: minires bench --quick
    python -m minires.benchmarks --help

Modules: `specs` (layers, FLOP arithmetic), `machine` (CPU, peak, environment),
`worker` (one backend per process), `sweep` (the orchestrator), `report`
(CSV/JSON/Markdown), `story` (the ratio convention and the verdicts in words, computed
from the rows), `plots` (PNG), `cli` (the command line).
"""

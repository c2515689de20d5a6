"""Raw ndarray kernels; `reference` (NumPy) and `jit` (Numba).

Both subpackages implement the same functions with the same signatures (see
`kernels/INTERFACE.md`). They work on plain NumPy arrays only: no Tensor, no autograd,
and they never import `minires`. Import the one you want explicitly, e.g.
`from kernels import reference` - this module deliberately imports neither.
"""

"""Weight interchange with PyTorch / torchvision.

minires models use torchvision's state_dict keys, so a checkpoint moves across as a
plain dict of arrays:

    import minires as mr
    from minires import interop

    state = interop.load_torch("resnet50-0676ba61.pth")     # needs torch installed
    model = mr.models.resnet50()
    interop.load_weights(model, state)                       # refuses a wrong architecture
    interop.save_npz(model, "resnet50.npz")                  # no torch needed from here on
    interop.load_weights(model, "resnet50.npz")

    sd = interop.to_torch(model)                             # dict of torch tensors
    torch_model.load_state_dict(sd)

Reading ``.pth`` / ``.pt`` files needs PyTorch (they are pickles); ``.npz`` files are
read and written by `minires.save` / `minires.load` and need nothing but NumPy.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minires.nn import Module
from minires.serialization import load, save
from minires.tensor import Tensor, torch_to_numpy

TORCH_HINT = (
    "reading or writing PyTorch checkpoints needs PyTorch: install the CPU build with\n"
    "    pip install torch --index-url https://download.pytorch.org/whl/cpu\n"
    "(or convert the checkpoint to .npz with minires.interop.save_npz on a machine that "
    "has torch; .npz files need only NumPy)"
)

# Wrappers training scripts put around a state_dict.
_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
_MAX_LISTED = 20


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise ImportError(TORCH_HINT) from exc
    return torch


def to_numpy_state_dict(state: Mapping[str, Any]) -> OrderedDict[str, np.ndarray]:
    """Any state dict (torch tensors, minires Tensors, arrays, numbers) -> ordered dict
    of ndarrays with the same keys and shapes. Torch tensors are copied to the CPU."""
    if not isinstance(state, Mapping):
        raise TypeError(f"expected a mapping of name -> array, got {type(state).__name__}")
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for k, v in state.items():
        if not isinstance(k, str):
            raise TypeError(f"state dict keys must be strings, got {k!r}")
        if isinstance(v, Tensor):
            arr = v.data
        elif hasattr(v, "detach") and hasattr(v, "numpy"):  # torch.Tensor
            arr = torch_to_numpy(v)
        else:
            arr = np.asarray(v)
        if arr.dtype.kind not in "biuf":  # strings, objects, complex: no weights
            raise TypeError(
                f"state dict entry {k!r} is not a real-valued array ({type(v).__name__} of "
                f"dtype {arr.dtype})"
            )
        out[k] = np.array(arr, copy=True)
    return out


def _unwrap(obj: Any, source: str) -> Mapping[str, Any]:
    """Find the state dict inside a checkpoint and strip DataParallel's ``module.``."""
    if isinstance(obj, Mapping):
        for key in _CONTAINER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if hasattr(obj, "state_dict") and callable(obj.state_dict):  # a whole pickled nn.Module
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: no state dict found (got a {type(obj).__name__})")
    keys = list(obj)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        obj = OrderedDict((k[len("module.") :], v) for k, v in obj.items())
    return obj


def load_torch(path: str | os.PathLike) -> OrderedDict[str, np.ndarray]:
    """Read a PyTorch/torchvision checkpoint (``.pth``/``.pt``) into a dict of ndarrays.

    Uses ``torch.load(..., weights_only=True)`` (no arbitrary code runs). Accepts a bare
    state_dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``, and strips
    a ``module.`` prefix (DataParallel). Raises ImportError saying what to install when
    PyTorch is missing.
    """
    torch = _import_torch()
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load_torch: no such file {str(path)!r}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or objects weights_only refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.startswith("Weights only load failed"):  # torch's advice would run code
            first = "not a torch file, or it holds objects that are refused as unsafe"
        raise ValueError(
            f"load_torch: {str(path)!r} is not a readable PyTorch checkpoint ({first})"
        ) from None
    return to_numpy_state_dict(_unwrap(obj, str(path)))


def save_npz(model_or_state: Module | Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a model's state_dict (or any state dict, e.g. from `load_torch`) as a
    minires ``.npz`` file (`minires.save`)."""
    state = (
        model_or_state.state_dict()
        if isinstance(model_or_state, Module)
        else to_numpy_state_dict(model_or_state)
    )
    save(state, path)


def load_npz(path: str | os.PathLike) -> OrderedDict[str, np.ndarray]:
    """Read a state dict written by `save_npz` (or `minires.save`)."""
    obj = load(path)
    if not isinstance(obj, Mapping):
        raise ValueError(f"load_npz: {str(path)!r} holds a {type(obj).__name__}, not a state dict")
    return _unwrap(obj, str(path))  # type: ignore[return-value]


def read_state_dict(source: str | os.PathLike | Mapping[str, Any]) -> OrderedDict[str, np.ndarray]:
    """A state dict from a dict, a ``.npz`` file (minires) or a ``.pth``/``.pt`` file (torch)."""
    if isinstance(source, Mapping):
        return to_numpy_state_dict(_unwrap(source, "state dict"))
    path = Path(source)
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return load_torch(path)
    raise ValueError(
        f"read_state_dict: don't know how to read {str(path)!r}; expected .npz (minires) "
        "or .pth/.pt (PyTorch)"
    )


def _listed(items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = len(items) - len(shown)
    return "\n    ".join(shown) + (f"\n    ... and {more} more" if more else "")


def check_compatible(model: Module, state: Mapping[str, Any]) -> list[str]:
    """Why ``state`` does not fit ``model``: lines for missing keys, unexpected keys and
    shape mismatches (``key: checkpoint (…) vs model (…)``). Empty when it fits."""
    target = model.state_dict()
    given = to_numpy_state_dict(state)
    missing = [k for k in target if k not in given]
    unexpected = [k for k in given if k not in target]
    mismatched = [
        f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(target[k].shape)}"
        for k in target
        if k in given and tuple(given[k].shape) != tuple(target[k].shape)
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches:\n    " + _listed(mismatched))
    if missing:
        problems.append(
            f"{len(missing)} keys missing from the checkpoint:\n    " + _listed(missing)
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected keys in the checkpoint:\n    " + _listed(unexpected)
        )
    return problems


def load_weights(
    model: Module, source: str | os.PathLike | Mapping[str, Any], strict: bool = True
) -> Module:
    """Load a checkpoint (dict, ``.npz`` or ``.pth``) into ``model``, keeping its dtype.

    Refuses a checkpoint of another architecture with a ValueError listing the mismatched
    keys and shapes (with ``strict=False`` missing/unexpected keys are tolerated, shape
    mismatches never). Returns the model.
    """
    state = read_state_dict(source)
    problems = check_compatible(model, state)
    if not strict:
        problems = [p for p in problems if "shape mismatches" in p]
    if problems:
        where = source if isinstance(source, str | os.PathLike) else "the state dict"
        raise ValueError(
            f"checkpoint {str(where)!r} does not fit this {type(model).__name__} "
            "(wrong architecture?):\n  " + "\n  ".join(problems)
        )
    model.load_state_dict(state, strict=strict)
    return model


def to_torch(model_or_state: Module | Mapping[str, Any]) -> OrderedDict[str, Any]:
    """A state dict of torch tensors that ``torch.nn.Module.load_state_dict`` accepts
    (``num_batches_tracked`` stays int64, everything else keeps its float dtype)."""
    torch = _import_torch()
    state = (
        model_or_state.state_dict()
        if isinstance(model_or_state, Module)
        else to_numpy_state_dict(model_or_state)
    )
    return OrderedDict((k, torch.from_numpy(np.array(v, copy=True))) for k, v in state.items())


def save_torch(model_or_state: Module | Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write a ``.pth`` file that ``torch.load`` + ``load_state_dict`` read (needs torch)."""
    torch = _import_torch()
    torch.save(to_torch(model_or_state), Path(path))


__all__ = [
    "TORCH_HINT",
    "check_compatible",
    "load_npz",
    "load_torch",
    "load_weights",
    "read_state_dict",
    "save_npz",
    "save_torch",
    "to_numpy_state_dict",
    "to_torch",
]

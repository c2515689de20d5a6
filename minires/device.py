"""Device and dtype arguments as a PyTorch user writes them: ``x.to("cpu")``,
``x.to(np.float64)``, ``model.to("cpu", "float64")``, ``mr.zeros(3, dtype="float")``.

minires runs on the CPU only: ``"cpu"`` (and ``"cpu:0"``, ``torch.device("cpu")``) is
accepted and changes nothing; any other device is refused with a ValueError that says so.
Dtypes may be NumPy dtypes or types, their names, torch's names (``"float"`` is float32,
``"double"`` float64, ``"long"`` int64) or torch dtype objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# torch's spellings that NumPy reads differently ("float" is float64 to NumPy) or not at all
_TORCH_NAMES = {
    "float": np.float32,
    "double": np.float64,
    "long": np.int64,
    "int": np.int32,
    "bool": np.bool_,
}
_DTYPE_NAMES = {
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    **_TORCH_NAMES,
}


def resolve_dtype(spec: Any, op: str, *, float_only: bool = False) -> np.dtype:
    """The NumPy dtype meant by ``spec``; TypeError for what minires does not compute in
    (complex, float16, object, strings, ...)."""
    if isinstance(spec, str) or type(spec).__module__ == "torch":
        name = str(spec).removeprefix("torch.")
        try:  # torch's spellings first ("float" is float32), then NumPy's names
            dtype = np.dtype(_DTYPE_NAMES.get(name, name))
        except TypeError:
            raise TypeError(
                f"{op}: unknown dtype {spec!r}; use e.g. one of {sorted(_DTYPE_NAMES)}"
            ) from None
    else:
        try:
            dtype = np.dtype(spec)
        except TypeError:
            raise TypeError(f"{op}: {spec!r} is not a dtype") from None
    if not dtype.isnative:  # '>f4' means float32: tensors are native-endian
        dtype = dtype.newbyteorder("=")
    allowed = "f" if float_only else "fiub"
    if dtype.kind not in allowed or (dtype.kind == "f" and dtype.itemsize not in (4, 8)):
        kinds = "float32 or float64" if float_only else "float32, float64, integer or bool"
        raise TypeError(f"{op}: dtype {dtype} is not supported; minires uses {kinds}")
    return dtype


def _is_cpu(device: Any) -> bool:
    if isinstance(device, str):
        return device.strip().lower() in ("cpu", "cpu:0")
    return getattr(device, "type", None) == "cpu"  # torch.device("cpu") without torch


def _looks_like_device(value: Any) -> bool:
    if isinstance(value, str):
        return value.removeprefix("torch.") not in _DTYPE_NAMES
    return type(value).__name__ == "device"


def check_device(device: Any, op: str) -> None:
    """Accept the CPU; refuse every other device with a clear ValueError."""
    if device is not None and not _is_cpu(device):
        raise ValueError(
            f"{op}: device {str(device)!r} is not available: minires runs on the CPU only "
            f"(use 'cpu' or leave the device out; dtypes are spelled {sorted(_DTYPE_NAMES)})"
        )


def parse_to(args: tuple, kwargs: dict, op: str, *, float_only: bool = False) -> np.dtype | None:
    """The dtype asked for by ``.to(...)``'s arguments (None: keep the dtype).

    Accepts ``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(tensor)`` (its
    dtype), and the keywords ``device=``, ``dtype=`` and ``non_blocking=`` (ignored)."""
    unknown = set(kwargs) - {"device", "dtype", "non_blocking"}
    if unknown:
        raise TypeError(f"{op}: unexpected keyword argument(s) {sorted(unknown)}")
    if len(args) > 2:
        raise TypeError(f"{op}: expected at most (device, dtype), got {len(args)} arguments")
    from minires.tensor import Tensor  # here: tensor.py imports this module lazily too

    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    for i, a in enumerate(args):
        if isinstance(a, Tensor | np.ndarray):  # to(other_tensor)
            given = ("dtype", a.dtype)
        elif _looks_like_device(a) and i == 0:
            given = ("device", a)
        else:
            given = ("dtype", a)
        if given[0] == "device":
            if device is not None:
                raise TypeError(f"{op}: device given twice")
            device = given[1]
        else:
            if dtype is not None:
                raise TypeError(f"{op}: dtype given twice")
            dtype = given[1]
    check_device(device, op)
    return None if dtype is None else resolve_dtype(dtype, op, float_only=float_only)

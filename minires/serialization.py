"""``mr.save`` / ``mr.load``: state dicts and checkpoints as ``.npz`` files.

A file holds every ndarray of the object as its own entry (dotted path as the name)
plus one ``__minires__`` entry: JSON describing the nesting and the non-array values
(ints, floats, strings, lists, None). It is written to a temporary file in the same
folder and renamed over the target, so a crash never leaves a half-written checkpoint;
zip CRCs catch corruption on load. No pickle is involved in either direction.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from minires.tensor import Tensor

MAGIC = "__minires__"
FORMAT_VERSION = 1


def _flatten(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of ``obj``; arrays are moved into ``arrays`` and referenced by key."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if isinstance(obj, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        for k in obj:  # ints too: an optimizer's state is keyed by parameter index
            if not isinstance(k, str | int) or isinstance(k, bool):
                raise TypeError(
                    f"save: dict keys must be str or int, got {k!r} at {path or 'top level'}"
                )
        return {
            "__dict__": [
                [k, _flatten(v, f"{path}.{k}" if path else k, arrays)] for k, v in obj.items()
            ]
        }
    if isinstance(obj, list | tuple):
        kind = "__tuple__" if isinstance(obj, tuple) else "__list__"
        return {kind: [_flatten(v, f"{path}[{i}]", arrays) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(
        f"save: cannot store a {type(obj).__name__} at {path or 'top level'}; "
        "only arrays, Tensors, numbers, strings, None, lists, tuples and dicts with str/int keys"
    )


def _unflatten(node: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(node, dict):
        if "__array__" in node:
            return arrays[node["__array__"]]
        if "__dict__" in node:
            return OrderedDict((k, _unflatten(v, arrays)) for k, v in node["__dict__"])
        if "__tuple__" in node:
            return tuple(_unflatten(v, arrays) for v in node["__tuple__"])
        if "__list__" in node:
            return [_unflatten(v, arrays) for v in node["__list__"]]
        raise ValueError(f"unrecognised entry in minires file structure: {sorted(node)}")
    return node


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (a state_dict, or a nested dict of arrays and plain values) to ``path``
    atomically. A ``.npz`` suffix is expected but not added."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten(obj, "", arrays)
    meta = json.dumps({"format": "minires", "version": FORMAT_VERSION, "root": skeleton})
    payload = dict(arrays)
    payload[MAGIC] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike) -> Any:
    """Read an object written by `save`. Refuses truncated, corrupt or foreign files with
    a ValueError that says which."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"load: no such file {str(path)!r}")
    if not zipfile.is_zipfile(path):  # also what a truncated .npz looks like
        raise ValueError(
            f"load: {str(path)!r} is truncated or corrupt, or not a minires .npz file "
            "(no valid zip archive found)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            if MAGIC not in npz.files:
                raise ValueError(
                    f"load: {str(path)!r} is an .npz file but not a minires checkpoint (no "
                    f"{MAGIC} entry); its entries are {npz.files[:8]}"
                )
            meta = json.loads(bytes(npz[MAGIC]).decode("utf-8"))
            arrays = {k: npz[k] for k in npz.files if k != MAGIC}
    except ValueError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"load: {str(path)!r} is truncated or corrupt, or not a minires .npz file ({exc})"
        ) from exc
    if meta.get("format") != "minires" or meta.get("version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"load: {str(path)!r} has format {meta.get('format')!r} version "
            f"{meta.get('version')!r}; this minires reads format 'minires' <= {FORMAT_VERSION}"
        )
    return _unflatten(meta["root"], arrays)

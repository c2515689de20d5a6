"""``mr.save`` / ``mr.load``: state dicts and checkpoints as ``.npz`` files.

A file holds every ndarray of the object as its own entry (dotted path as the name)
plus one ``__minires__`` entry: JSON describing the nesting and the non-array values
(ints, floats, strings, lists, None). It is written to a temporary file in the same
folder (``.<name>.<pid>-<random>.tmp``) and renamed over the target, so a crash never
leaves a half-written checkpoint; a later save to the same path removes temporary files
left by a process that died mid-save. Files get the usual permissions (0666 minus the
umask). No pickle is involved in either direction.

Loading treats the file as untrusted: before anything is allocated, the declared shape
and dtype of every array (read from the ``.npy`` headers inside the zip) are checked
against the zip's member sizes and against a size limit (``max_bytes``, default
`DEFAULT_MAX_LOAD_BYTES` = 1 GiB, or the ``MINIRES_MAX_LOAD_BYTES`` environment variable,
e.g. ``4G``), so a small file cannot expand into gigabytes (a "decompression bomb").
Anything wrong with the file (truncated, corrupt, foreign, too large, odd structure)
raises a ValueError that says what.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from minires.tensor import Tensor

MAGIC = "__minires__"
FORMAT_VERSION = 1
DEFAULT_MAX_LOAD_BYTES = 1 << 30
MAX_LOAD_BYTES_ENV = "MINIRES_MAX_LOAD_BYTES"
MAX_NESTING = 64  # a checkpoint nests 4-5 levels; deeper is a crafted file
_ARRAY_KINDS = "biuf"  # bool, ints, floats: all a state dict or checkpoint holds


def _flatten(obj: Any, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON skeleton of ``obj``; arrays are moved into ``arrays`` and referenced by key."""
    if isinstance(obj, Tensor):
        obj = obj.data
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ARRAY_KINDS or obj.dtype.fields or obj.dtype.subdtype:
            raise TypeError(
                f"save: cannot store an array of dtype {obj.dtype} at {path or 'top level'}; "
                "only bool, integer and float arrays"
            )
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


def _unflatten(node: Any, arrays: Mapping[str, np.ndarray], depth: int = 0) -> Any:
    """Rebuild the object from the JSON skeleton, checking every node's form (the file
    may be crafted: wrong types, unknown keys, dangling array references, deep nesting)."""
    if depth > MAX_NESTING:
        raise ValueError(f"structure nested deeper than {MAX_NESTING} levels")
    if isinstance(node, dict):
        if len(node) != 1:
            raise ValueError(f"unrecognised entry in the file structure: keys {sorted(node)[:5]}")
        ((kind, value),) = node.items()
        if kind == "__array__":
            if not isinstance(value, str) or value not in arrays:
                raise ValueError(f"reference to a missing array {value!r}")
            return arrays[value]
        if kind == "__dict__":
            if not isinstance(value, list):
                raise ValueError("a __dict__ entry must hold a list of [key, value] pairs")
            out = OrderedDict()
            for item in value:
                if (
                    not isinstance(item, list)
                    or len(item) != 2
                    or not isinstance(item[0], str | int)
                    or isinstance(item[0], bool)
                ):
                    raise ValueError(f"bad dict item {str(item)[:60]!r}: expected [key, value]")
                out[item[0]] = _unflatten(item[1], arrays, depth + 1)
            return out
        if kind in ("__tuple__", "__list__"):
            if not isinstance(value, list):
                raise ValueError(f"a {kind} entry must hold a list")
            items = [_unflatten(v, arrays, depth + 1) for v in value]
            return tuple(items) if kind == "__tuple__" else items
        raise ValueError(f"unrecognised entry in the file structure: {kind!r}")
    if node is None or isinstance(node, bool | int | float | str):
        return node
    raise ValueError(f"unexpected {type(node).__name__} in the file structure")


# -- atomic writes ----------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: leave its file alone
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.<name>.<pid>-<token>.tmp`` files left in ``path``'s folder by a save to
    the same path whose process has died (``kill -9``, power loss)."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)-[0-9a-f]+\.tmp$")
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file atomically: ``write(f)`` fills a temporary file in the same folder,
    which is flushed to disk and renamed over ``path``. On any error the temporary file
    is removed and ``path`` is untouched. The file's mode follows the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` (a state_dict, or a nested dict of arrays and plain values) to ``path``
    atomically. A ``.npz`` suffix is expected but not added."""
    arrays: dict[str, np.ndarray] = {}
    skeleton = _flatten(obj, "", arrays)
    meta = json.dumps({"format": "minires", "version": FORMAT_VERSION, "root": skeleton})
    payload = dict(arrays)
    payload[MAGIC] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **payload))


# -- loading untrusted files --------------------------------------------------------------


def _parse_size(text: str) -> int:
    """``"1073741824"``, ``"512M"``, ``"4G"`` -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not m:
        raise ValueError(
            f"{MAX_LOAD_BYTES_ENV}={text!r}: expected a number of bytes, e.g. 2147483648 or 2G"
        )
    return int(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper())


def max_load_bytes(max_bytes: int | None = None) -> int:
    """The size limit `load` applies: ``max_bytes`` if given, else the
    ``MINIRES_MAX_LOAD_BYTES`` environment variable, else `DEFAULT_MAX_LOAD_BYTES`."""
    if max_bytes is None:
        env = os.environ.get(MAX_LOAD_BYTES_ENV)
        return _parse_size(env) if env else DEFAULT_MAX_LOAD_BYTES
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"load: max_bytes must be a non-negative int, got {max_bytes!r}")
    return max_bytes


class _TooLarge(ValueError):
    """A well-formed file above the size limit (not a corrupt one)."""


def _read_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version in ((2, 0), (3, 0)):
        return np.lib.format.read_array_header_2_0(f)
    raise ValueError(f"unsupported .npy version {version}")


def _read_arrays(zf: zipfile.ZipFile, limit: int) -> dict[str, np.ndarray]:
    """Every ``.npy`` member of the zip, after checking all of their headers first."""
    infos = zf.infolist()
    total = sum(i.file_size for i in infos)
    if total > limit:
        raise _TooLarge(
            f"its entries would expand to {total:,} bytes, above the load limit of {limit:,} "
            f"(pass max_bytes=... or set {MAX_LOAD_BYTES_ENV} to load larger files you trust)"
        )
    plan = []
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise ValueError(f"unexpected entry {info.filename!r} (not an .npy array)")
        with zf.open(info) as f:
            shape, fortran, dtype = _read_header(f)
            header_len = f.tell()
        if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.fields or dtype.subdtype:
            raise ValueError(f"entry {info.filename!r} has unsupported dtype {dtype}")
        count = 1
        for n in shape:
            count *= int(n)
        nbytes = count * dtype.itemsize
        if nbytes + header_len != info.file_size:
            raise ValueError(
                f"entry {info.filename!r} declares shape {tuple(shape)} {dtype} "
                f"({nbytes:,} bytes) but holds {info.file_size - header_len:,}"
            )
        plan.append(info)
    arrays = {}
    for info in plan:
        with zf.open(info) as f:
            arrays[info.filename[: -len(".npy")]] = np.lib.format.read_array(f, allow_pickle=False)
    return arrays


def load(path: str | os.PathLike, max_bytes: int | None = None) -> Any:
    """Read an object written by `save`.

    Args:
        path: the ``.npz`` file.
        max_bytes: refuse files whose arrays would take more than this many bytes once
            read (default: ``$MINIRES_MAX_LOAD_BYTES`` or 1 GiB). Checked from the file's
            headers before anything is allocated.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated, corrupt, too large, or not a minires file;
            the message says which.
    """
    path = Path(path)
    limit = max_load_bytes(max_bytes)
    if not path.exists():
        raise FileNotFoundError(f"load: no such file {str(path)!r}")
    where = f"load: {str(path)!r}"
    try:
        if not zipfile.is_zipfile(path):  # also what a truncated .npz looks like
            raise ValueError("no valid zip archive found")
        with zipfile.ZipFile(path) as zf:
            arrays = _read_arrays(zf, limit)
        if MAGIC not in arrays:
            raise ValueError(
                f"an .npz file but not a minires checkpoint (no {MAGIC} entry; entries "
                f"{sorted(arrays)[:8]})"
            )
        raw = arrays.pop(MAGIC)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError(f"its {MAGIC} entry is {raw.dtype} {raw.shape}, not bytes")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError(f"its {MAGIC} entry is not a JSON object")
        version = meta.get("format"), meta.get("version")
        if (
            version[0] != "minires"
            or not isinstance(version[1], int)
            or not (0 <= version[1] <= FORMAT_VERSION)
        ):
            raise ValueError(
                f"has format {version[0]!r} version {version[1]!r}; this minires reads "
                f"format 'minires' <= {FORMAT_VERSION}"
            )
        if "root" not in meta:
            raise ValueError(f"its {MAGIC} entry has no 'root'")
        return _unflatten(meta["root"], arrays)
    except (PermissionError, MemoryError):
        raise
    except _TooLarge as exc:
        raise ValueError(f"{where} refused: {exc}") from exc
    except ValueError as exc:  # also json.JSONDecodeError and UnicodeDecodeError
        raise ValueError(
            f"{where} is truncated or corrupt, or not a minires .npz file: {exc}"
        ) from exc
    except Exception as exc:  # BadZipFile, EOFError, KeyError, RecursionError, zip
        # "encrypted" RuntimeError, ...: whatever a crafted file triggers is its fault
        raise ValueError(
            f"{where} is truncated or corrupt, or not a minires .npz file "
            f"({type(exc).__name__}: {exc})"
        ) from exc

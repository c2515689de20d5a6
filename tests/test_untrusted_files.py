"""Files are untrusted input: `mr.load` of any crafted or corrupt file raises a ValueError
with the reason (nothing else), decompression bombs are refused before allocation, CIFAR
pickles are checked before NumPy allocates, `load_state_dict` is all-or-nothing, saves
clean up after interrupted ones and follow the umask."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import minires as mr
from minires import data, nn
from minires.serialization import MAGIC, atomic_write

# -- helpers ------------------------------------------------------------------------------


def _npz(path, members: dict, compress: bool = False) -> None:
    """Write a zip of .npy members (ndarrays, or raw bytes for a member's whole content)."""
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name, value in members.items():
            if isinstance(value, bytes):
                zf.writestr(name, value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=True)
                zf.writestr(name + ".npy", buf.getvalue())


def _meta(root, fmt="minires", version=1) -> np.ndarray:
    text = json.dumps({"format": fmt, "version": version, "root": root})
    return np.frombuffer(text.encode(), dtype=np.uint8)


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def _refused(path, match: str | None = None, **kw) -> str:
    with pytest.raises(ValueError, match=match) as info:
        mr.load(path, **kw)
    return str(info.value)


# -- mr.load: crafted files ---------------------------------------------------------------


def test_load_roundtrip_still_works(tmp_path):
    obj = {"w": np.arange(6.0).reshape(2, 3), "n": [1, (2.5, None)], "s": {"k": "v", 3: True}}
    mr.save(obj, tmp_path / "ok.npz")
    back = mr.load(tmp_path / "ok.npz")
    np.testing.assert_array_equal(back["w"], obj["w"])
    assert back["n"] == [1, (2.5, None)] and back["s"] == {"k": "v", 3: True}


BAD_ROOTS = {
    "array ref not a string": {"__array__": 5},
    "missing array": {"__array__": "a99"},
    "dict not a list": {"__dict__": "x"},
    "dict item wrong form": {"__dict__": [[1.5, 2]]},
    "dict item not a pair": {"__dict__": [[1, 2, 3]]},
    "two kinds in one node": {"__list__": [], "__tuple__": []},
    "unknown kind": {"__set__": [1]},
    "list not a list": {"__list__": {"a": 1}},
    "deep nesting": json.loads("[" * 200 + "]" * 200),
}


@pytest.mark.parametrize("root", list(BAD_ROOTS.values()), ids=list(BAD_ROOTS))
def test_load_refuses_crafted_structures(tmp_path, root):
    def wrap(node, depth):  # JSON lists as __list__ nodes, so deep nesting reaches _unflatten
        if isinstance(node, list):
            return {"__list__": [wrap(v, depth + 1) for v in node]}
        return node

    path = tmp_path / "bad.npz"
    _npz(path, {MAGIC: _meta(wrap(root, 0)), "a0": np.ones(2)})
    _refused(path, "truncated or corrupt")


def test_load_refuses_bad_meta_and_entries(tmp_path):
    cases = {
        "magic not bytes": {MAGIC: np.ones(3)},
        "magic not json": {MAGIC: np.frombuffer(b"\xff\xfe{", np.uint8)},
        "magic json list": {MAGIC: np.frombuffer(b"[1, 2]", np.uint8)},
        "newer version": {MAGIC: _meta(None, version=99)},
        "version a string": {MAGIC: _meta(None, version="1")},
        "foreign format": {MAGIC: _meta(None, fmt="other")},
        "no root": {MAGIC: np.frombuffer(b'{"format": "minires", "version": 1}', np.uint8)},
        "object array": {MAGIC: _meta({"__array__": "a0"}), "a0": np.array([{}], dtype=object)},
        "structured dtype": {
            MAGIC: _meta({"__array__": "a0"}),
            "a0": np.zeros(2, dtype=[("x", "f4"), ("y", "i4")]),
        },
        "complex dtype": {MAGIC: _meta({"__array__": "a0"}), "a0": np.zeros(2, complex)},
        "not an npy member": {MAGIC: _meta(None), "readme.txt": b"hello"},
        "garbage npy member": {MAGIC: _meta(None), "a0.npy": b"\x93NUMPY\x01\x00garbage"},
        "deep json": {MAGIC: np.frombuffer(b"[" * 100000 + b"]" * 100000, np.uint8)},
    }
    for name, members in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npz"
        _npz(path, members)
        msg = _refused(path)
        assert str(path) in msg, name


def test_load_refuses_lying_header_before_allocating(tmp_path):
    # The header claims 1 GiB of float64 but the member holds 80 bytes.
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (2**27,)}
    )
    path = tmp_path / "liar.npz"
    _npz(path, {MAGIC: _meta({"__array__": "a0"}), "a0.npy": buf.getvalue() + bytes(80)})
    peak = _peak_mib(lambda: _refused(path, r"declares shape \(134217728,\)"))
    assert peak < 20


def _bomb(path, nbytes: int) -> None:
    """A deflated .npz whose one array of zeros expands to ``nbytes``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        meta = io.BytesIO()
        np.lib.format.write_array(meta, _meta({"__dict__": [["x", {"__array__": "a0"}]]}))
        zf.writestr(MAGIC + ".npy", meta.getvalue())
        with zf.open("a0.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(
                f, {"descr": "|u1", "fortran_order": False, "shape": (nbytes,)}
            )
            chunk = bytes(1 << 24)
            for _ in range(nbytes // len(chunk)):
                f.write(chunk)


def test_decompression_bomb_refused_by_the_limit(tmp_path, monkeypatch):
    path = tmp_path / "bomb.npz"
    _bomb(path, 64 << 20)
    assert path.stat().st_size < 1 << 20  # small on disk, 64 MiB once read
    peak = _peak_mib(lambda: _refused(path, "above the load limit", max_bytes=16 << 20))
    assert peak < 16
    monkeypatch.setenv("MINIRES_MAX_LOAD_BYTES", "16M")
    _refused(path, "MINIRES_MAX_LOAD_BYTES")
    monkeypatch.setenv("MINIRES_MAX_LOAD_BYTES", "1G")
    assert mr.load(path)["x"].shape == (64 << 20,)  # within the limit it loads
    monkeypatch.setenv("MINIRES_MAX_LOAD_BYTES", "lots")
    with pytest.raises(ValueError, match="MINIRES_MAX_LOAD_BYTES"):
        mr.load(path)


@pytest.mark.slow
def test_one_gib_bomb_refused_by_default(tmp_path):
    path = tmp_path / "bomb.npz"
    _bomb(path, 1 << 30)
    assert path.stat().st_size < 2 << 20
    peak = _peak_mib(lambda: _refused(path, "above the load limit"))
    assert peak < 16


def test_load_fuzz_truncations_and_bit_flips(tmp_path):
    """Every truncation point and thousands of single-byte corruptions of a real
    checkpoint: ValueError (or a successful load of the intact data), never anything
    else."""
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    good = tmp_path / "good.npz"
    mr.save({"model": model.state_dict(), "epoch": 3, "cfg": {"lr": 0.1, "m": [1, 2]}}, good)
    raw = good.read_bytes()
    rng = np.random.default_rng(0)
    bad = tmp_path / "bad.npz"
    cuts = sorted(set(rng.integers(0, len(raw), 150).tolist()) | {0, 1, 4, len(raw) - 1})
    variants = [raw[:c] for c in cuts]
    for pos in rng.integers(0, len(raw), 400):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        variants.append(bytes(flipped))
    for _ in range(600):  # 1-3 random bytes replaced, sometimes truncated too
        mutated = bytearray(raw)
        for pos in rng.integers(0, len(raw), rng.integers(1, 4)):
            mutated[pos] = int(rng.integers(0, 256))
        variants.append(bytes(mutated[: rng.integers(len(raw) // 2, len(raw) + 1)]))
    outcomes = {"refused": 0, "loaded": 0}
    for blob in variants:
        bad.write_bytes(blob)
        try:
            mr.load(bad)
            outcomes["loaded"] += 1  # a flip in slack bytes (zip comment, padding)
        except ValueError as exc:
            assert str(bad) in str(exc)
            outcomes["refused"] += 1
    assert outcomes["refused"] > len(variants) // 2


def test_load_refuses_an_encrypted_member(tmp_path):
    path = tmp_path / "enc.npz"
    mr.save({"w": np.ones(3)}, path)
    raw = bytearray(path.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # local and central headers: set bit 0
        at = raw.find(sig)
        raw[at + (6 if sig == b"PK\x03\x04" else 8)] |= 1
    path.write_bytes(bytes(raw))
    _refused(path, "encrypted")


# -- mr.save: temp files and permissions --------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_save_removes_stale_temps_of_dead_processes_only(tmp_path):
    path = tmp_path / "ck.npz"
    stale = tmp_path / f".ck.npz.{_dead_pid()}-0badc0de.tmp"
    alive = tmp_path / f".ck.npz.{os.getppid()}-600dc0de.tmp"  # a live process's save
    other = tmp_path / f".other.npz.{_dead_pid()}-0badc0de.tmp"  # another target's
    for f in (stale, alive, other):
        f.write_bytes(b"partial")
    mr.save({"a": np.ones(2)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.npz", alive.name, other.name])


def test_kill_9_during_save_leaves_nothing_after_the_next_save(tmp_path):
    path = tmp_path / "ck.npz"
    code = f"""
import sys, time
sys.path.insert(0, {os.getcwd()!r})
from minires.serialization import atomic_write
def slow(f):
    f.write(b"x" * 1000); f.flush(); print("writing", flush=True); time.sleep(60)
atomic_write({str(path)!r}, slow)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        assert any(n.endswith(".tmp") for n in os.listdir(tmp_path))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    mr.save({"a": np.ones(2)}, path)
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_save_refuses_arrays_load_would_refuse(tmp_path):
    for bad in (np.array([{}], dtype=object), np.ones(2, complex), np.zeros(2, "f4,i4")):
        with pytest.raises(TypeError, match="cannot store an array of dtype"):
            mr.save({"x": bad}, tmp_path / "x.npz")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_no_temp_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "ck.npz"
    mr.save({"a": np.ones(2)}, path)

    def boom(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, boom)
    assert os.listdir(tmp_path) == ["ck.npz"]
    np.testing.assert_array_equal(mr.load(path)["a"], np.ones(2))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        mr.save({"a": np.ones(2)}, tmp_path / "ck.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "ck.npz").st_mode & 0o777 == mode


# -- load_state_dict: all or nothing ------------------------------------------------------


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)
    )


@pytest.mark.parametrize(
    "spoil",
    [
        lambda sd: sd.__setitem__("4.bias", np.ones(3)),  # wrong shape, last entry
        lambda sd: sd.__setitem__("4.weight", np.array([["a", "b"]] * 2 * 2).reshape(2, 4)),
        lambda sd: sd.__setitem__("4.weight", np.ones((2, 4), complex)),
        lambda sd: sd.__setitem__("4.bias", object()),
        lambda sd: sd.__setitem__("1.num_batches_tracked", np.array(np.nan)),
        lambda sd: sd.pop("4.bias"),
        lambda sd: sd.__setitem__("extra", np.ones(1)),
    ],
)
def test_load_state_dict_validates_every_entry_before_writing_any(spoil):
    model = _net()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = {k: v + 1 for k, v in _net().state_dict().items()}  # all different values
    spoil(sd)
    with pytest.raises(ValueError, match="nothing was loaded"):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_load_state_dict_keeps_non_finite_values_and_dtypes():
    model = _net()
    sd = model.state_dict()
    sd["4.bias"] = np.array([np.nan, np.inf], dtype=np.float64)
    sd["1.num_batches_tracked"] = np.array(7.0)
    model.load_state_dict(sd)
    assert model[4].bias.dtype == np.float32 and np.isnan(model[4].bias.data[0])
    assert model[1].num_batches_tracked.dtype == np.int64 and model[1].num_batches_tracked == 7
    sd["junk"] = object()  # unexpected keys are ignored with strict=False, whatever they hold
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == [] and unexpected == ["junk"]
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("4.bias", np.ones(2))])


# -- CIFAR pickles --------------------------------------------------------------------------


class _Reduce:
    """Pickles as ``func(*args)`` (then ``BUILD state`` if given): a way to write the
    crafted pickles an attacker would write by hand."""

    def __init__(self, func, args, state=None):
        self.r = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.r


def _reconstruct_fn():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - NumPy 1
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _batch_file(tmp_path, obj, protocol=2):
    folder = data.write_cifar10_folder(tmp_path, n_per_batch=2)
    (folder / "test_batch").write_bytes(pickle.dumps(obj, protocol=protocol))
    return folder / "test_batch"


def _cifar_refused(path, match=None):
    def run():
        with pytest.raises(ValueError, match=match):
            data.read_cifar_batch(path)

    return _peak_mib(run)


def test_cifar_nested_label_lists_refused_before_conversion(tmp_path):
    inner = [0] * 10000
    crafted = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [inner] * 10000}
    path = _batch_file(tmp_path, crafted)
    assert path.stat().st_size < 64 << 10  # ~40 KB that np.asarray would make 800 MB
    assert _cifar_refused(path, "labels") < 20
    crafted[b"data"] = [[0] * 3072] * 10000  # data as a list of shared lists
    crafted[b"labels"] = [0] * 10000
    assert _cifar_refused(_batch_file(tmp_path, crafted), "'data' is a list") < 20


def test_cifar_presized_and_lying_arrays_refused(tmp_path):
    rec = _reconstruct_fn()
    huge = _Reduce(rec, (np.ndarray, (1 << 31,), b"b"))
    lying = _Reduce(rec, (np.ndarray, (0,), b"b"), (1, (1 << 31,), np.dtype("u1"), False, b""))
    subarray = np.dtype(("u1", (1 << 15, 1 << 15)))
    objects = np.array([1, "x"], dtype=object)
    direct = _Reduce(np.ndarray, ((1 << 28,),))  # ndarray(shape): 2 GiB at once
    for payload in (huge, lying, direct, subarray, objects, np.dtype("V1000000")):
        path = _batch_file(tmp_path, {b"data": payload, b"labels": [0]})
        assert _cifar_refused(path, "refusing|corrupt") < 20
    for proto in (2, 4, 5):  # genuine batches of every protocol still load
        good = {b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072), b"labels": [3, 9]}
        images, labels = data.read_cifar_batch(_batch_file(tmp_path, good, proto))
        assert images.shape == (2, 3, 32, 32) and labels.tolist() == [3, 9]


def test_cifar_truncated_and_flipped_batches_give_value_errors(tmp_path):
    path = data.write_cifar10_folder(tmp_path, n_per_batch=3) / "test_batch"
    raw = path.read_bytes()
    rng = np.random.default_rng(1)
    variants = [raw[:c] for c in rng.integers(0, len(raw), 60)]
    for pos in rng.integers(0, 200, 200):  # the structure is at the start
        b = bytearray(raw)
        b[pos] = int(rng.integers(0, 256))
        variants.append(bytes(b))
    for blob in variants:
        path.write_bytes(blob)
        try:
            data.read_cifar_batch(path)
        except ValueError:
            pass


# -- crafted checkpoints (fuzz findings, session 7) -------------------------------------------


def _checkpoint(tmp_path):
    from minires import training

    model = nn.Linear(3, 2)
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = training.save_checkpoint(tmp_path / "ck.npz", model, opt, epoch=1)
    return training, model, opt, path


@pytest.mark.parametrize("version", ["9", None, True, 0, 1.5])
def test_checkpoint_with_a_bad_version_is_refused(tmp_path, version):
    training, _, _, path = _checkpoint(tmp_path)
    ck = training.load_checkpoint(path)
    ck["version"] = version
    mr.save(ck, tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="version"):
        training.load_checkpoint(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "key,value", [("model", None), ("optimizer", [1]), ("rng", "x"), ("epoch", "1"), ("model", 3)]
)
def test_checkpoint_with_a_missing_or_wrong_entry_is_refused(tmp_path, key, value):
    training, model, opt, path = _checkpoint(tmp_path)
    ck = training.load_checkpoint(path)
    before = model.weight.data.copy()
    for variant in ("missing", "wrong"):
        bad = dict(ck)
        if variant == "missing":
            del bad[key]
        else:
            bad[key] = value
        with pytest.raises(ValueError, match=repr(key)):
            training.restore_checkpoint(bad, model, opt)
        mr.save(bad, tmp_path / "bad.npz")
        with pytest.raises(ValueError, match=repr(key)):
            training.load_checkpoint(tmp_path / "bad.npz")
    np.testing.assert_array_equal(model.weight.data, before)  # nothing was loaded


@pytest.mark.parametrize(
    "state",
    [
        {"state": {}},
        {"param_groups": [{"lr": 0.1}], "state": {}},
        {"param_groups": [{"params": [0, 1], "lr": "fast"}], "state": {}},
        {"param_groups": [{"params": [0, 1], "lr": 0.1}], "state": {"x": {}}},
        {"param_groups": "all", "state": {}},
        [],
    ],
)
def test_optimizer_state_of_another_shape_is_refused(tmp_path, state):
    _, _, opt, _ = _checkpoint(tmp_path)
    with pytest.raises(ValueError, match="optimizer state_dict"):
        opt.load_state_dict(state)


def test_load_torch_refuses_unreadable_files_clearly(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="reading .pth files needs PyTorch")
    from minires import interop

    path = tmp_path / "m.pth"
    torch.save({"weight": torch.ones(2, 3, dtype=torch.bfloat16), "bias": torch.zeros(2)}, path)
    model = interop.load_weights(nn.Linear(3, 2), path)  # bfloat16 widened to float32
    np.testing.assert_array_equal(model.weight.data, np.ones((2, 3), np.float32))
    good = path.read_bytes()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    for content in (good[:50], b"garbage" * 10, pickle.dumps(Evil())):
        path.write_bytes(content)
        with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
            interop.load_torch(path)
    assert not (tmp_path / "pwned").exists()

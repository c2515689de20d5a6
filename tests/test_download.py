"""Verified downloads (minires.data.download) against a local HTTP server on 127.0.0.1
that supports Range requests and can cut a transfer short; the MNIST IDX and CIFAR-100
loaders. No test touches the internet."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest

from minires import data
from minires.data import download as dl
from minires.data.mnist import parse_idx, write_idx


class _Server:
    """Serves ``files`` (name -> bytes). ``cut[name] = k`` sends only k bytes of the next
    full response for ``name`` (announcing the whole length), then drops the connection.
    ``requests`` logs (path, Range header)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                outer.requests.append((name, rng))
                body = outer.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                k = outer.cut.pop(name, None)
                self.wfile.write(part[:k] if k is not None else part)
                if k is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _cifar10_archive(tmp_path) -> bytes:
    folder = data.write_cifar10_folder(tmp_path / "src", n_per_batch=6)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return buf.getvalue()


def _mnist_files(tmp_path, n_train=12, n_test=5) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        img = write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz",
                        rng.integers(0, 256, (n, 28, 28)))  # fmt: skip
        lab = write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
        out[img.name], out[lab.name] = img.read_bytes(), lab.read_bytes()
    return out


def test_good_archive_is_accepted_and_never_fetched_again(server, tmp_path):
    archive = _cifar10_archive(tmp_path)
    server.files["cifar-10-python.tar.gz"] = archive
    root = tmp_path / "root"
    md5s = {"cifar-10-python.tar.gz": _md5(archive)}
    folder = dl.download("cifar10", root, mirror=server.url, md5s=md5s, progress=False)
    assert folder == root / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # no tmp, no .part
    x, y = data.load_cifar10(root, "test")
    assert x.shape == (6, 3, 32, 32) and y.shape == (6,)
    n = len(server.requests)
    dl.download("cifar10", root, mirror=server.url, md5s=md5s, progress=False)
    assert len(server.requests) == n  # a verified copy is never fetched again


def test_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    server.files["cifar-10-python.tar.gz"] = _cifar10_archive(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(dl.ChecksumError, match="checksum mismatch"):
        dl.download("cifar10", root, mirror=server.url, md5s={"cifar-10-python.tar.gz": "0" * 32},
                    progress=False)  # fmt: skip
    assert list(root.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        data.load_cifar10(root)


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    files = _mnist_files(tmp_path / "src")
    server.files.update(files)
    big = "train-images-idx3-ubyte.gz"
    server.cut[big] = len(files[big]) // 2
    md5s = {k: _md5(v) for k, v in files.items()}
    root = tmp_path / "root"
    with pytest.raises(ConnectionError, match="resume"):
        dl.download("mnist", root, mirror=server.url, md5s=md5s, progress=False)
    part = root / "mnist" / (big + ".part")
    assert part.stat().st_size == len(files[big]) // 2
    assert not (root / "mnist" / big).exists()  # never half-used
    dl.download("mnist", root, mirror=server.url, md5s=md5s, progress=False)
    assert (big, f"bytes={len(files[big]) // 2}-") in server.requests
    assert not part.exists()
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(files)
    x, y = data.load_mnist(root, "train")
    assert x.shape == (12, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    train, test, info = data.make_loaders("mnist", batch_size=4, root=root)
    assert (info.in_channels, info.image_size, info.n_train, info.n_test) == (1, 28, 12, 5)
    xb, yb = next(iter(train))
    assert xb.shape == (4, 1, 28, 28) and xb.dtype == np.float32


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network_gives_the_manual_steps(tmp_path):
    root = tmp_path / "root"
    with pytest.raises(ConnectionError) as exc:
        dl.download("cifar10", root, mirror=f"http://127.0.0.1:{_closed_port()}/",
                    progress=False, timeout=5)  # fmt: skip
    msg = str(exc.value)
    assert "cannot reach" in msg and "by hand" in msg
    assert "c58f30108f718f92721af3b95e74349a" in msg and "tar -xzf" in msg
    assert not root.exists() or list(root.iterdir()) == []


def test_cli_data_download_without_network(tmp_path, capsys):
    from minires.cli import main

    rc = main(["data", "download", "fashion-mnist", "--root", str(tmp_path / "r"),
               "--mirror", f"http://127.0.0.1:{_closed_port()}", "--timeout", "5"])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "bb300cfdad3c16e7a12a480ee83cd310" in err and "fashion-mnist" in err


def test_published_checksums_are_listed():
    assert dl.SOURCES["cifar10"].files[0] == ("cifar-10-python.tar.gz",
                                              "c58f30108f718f92721af3b95e74349a")  # fmt: skip
    assert dl.SOURCES["cifar100"].files[0][1] == "eb9058c3a382ffc7106e4002c42a8d85"
    assert dict(dl.SOURCES["mnist"].files)["t10k-labels-idx1-ubyte.gz"] == (
        "ec29112dd5afa0611ce80d1b7f02629c"
    )


def test_data_root_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("MINIRES_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert dl.data_root() == tmp_path / "minires"
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "d"))
    assert dl.data_root() == tmp_path / "d"


def test_idx_parser_validates_sizes():
    raw = bytes([0, 0, 8, 2]) + np.array([2, 3], ">i4").tobytes() + bytes(range(6))
    np.testing.assert_array_equal(parse_idx(raw), np.arange(6).reshape(2, 3))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        parse_idx(raw[:-1], "x")
    with pytest.raises(ValueError, match="not an IDX file"):
        parse_idx(b"\x1f\x8b\x08\x00" + raw, "x")


def test_mnist_loader_refuses_mismatched_files(tmp_path):
    folder = tmp_path / "mnist"
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((3, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(4))
    with pytest.raises(ValueError, match="3 images but 4 labels"):
        data.load_mnist(tmp_path, "test")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01"))
    with pytest.raises(ValueError, match="truncated"):
        data.load_mnist(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="minires data download mnist"):
        data.load_mnist(tmp_path / "nothing", "test")


def test_cifar100_loader_and_restricted_unpickler(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    d = {b"data": rng.integers(0, 256, (7, 3072), dtype=np.uint8),
         b"fine_labels": [int(v) for v in rng.integers(0, 100, 7)],
         b"coarse_labels": [int(v) for v in rng.integers(0, 20, 7)]}  # fmt: skip
    for split in ("train", "test"):
        (folder / split).write_bytes(pickle.dumps(d, protocol=2))
    x, y = data.load_cifar100(tmp_path, "train")
    assert x.shape == (7, 3, 32, 32) and list(y) == d[b"fine_labels"]
    _, yc = data.load_cifar100(tmp_path, "test", labels="coarse")
    assert list(yc) == d[b"coarse_labels"]
    _, _, info = data.make_loaders("cifar100", batch_size=4, root=tmp_path)
    assert info.num_classes == 100 and info.in_channels == 3

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "train").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ValueError, match="refusing"):
        data.load_cifar100(tmp_path, "train")


def test_train_download_fetches_and_trains(server, tmp_path, monkeypatch, capsys):
    """``minires train --dataset mnist --download`` with the publisher's URL and
    checksums pointed at the local server."""
    from dataclasses import replace

    from minires.commands import train

    files = _mnist_files(tmp_path / "src", n_train=16, n_test=6)
    server.files.update(files)
    src = replace(dl.SOURCES["mnist"], base_url=server.url,
                  files=tuple((k, _md5(v)) for k, v in files.items()))  # fmt: skip
    monkeypatch.setitem(dl.SOURCES, "mnist", src)
    root = tmp_path / "root"
    rc = train.main(["--dataset", "mnist", "--download", "--data-root", str(root),
                     "--model", "cifar_resnet8", "--epochs", "1", "--batch-size", "8",
                     "--out", str(tmp_path / "run"), "--no-progress", "--no-plot"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert (root / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert (tmp_path / "run" / "model.npz").exists()


def test_cli_download_reports_local_failures_in_one_line(tmp_path):
    """An unwritable root or a mirror that is not a URL: one line on stderr, exit 1, no
    traceback (and no network: both fail before any request)."""
    from minires.commands import data as data_cmd

    for argv in (
        ["download", "cifar10", "--root", "/proc/forbidden"],
        ["download", "cifar10", "--root", str(tmp_path), "--mirror", "notaurl"],
    ):
        assert data_cmd.main(argv) == 1

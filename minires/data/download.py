"""Verified downloads of CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST.

    minires data download cifar10                 # into $MINIRES_DATA or ~/.cache/minires
    minires.data.download.download("mnist", root="data")

Every file is streamed (with a progress bar) into ``NAME.part`` beside its destination and
checked against the checksum its publisher lists (the MD5s torchvision also checks)
before it is renamed into place, extracted or read. A checksum mismatch removes the file;
a broken connection leaves ``NAME.part`` so the next call resumes it with an HTTP Range
request; an archive is extracted into a temporary folder that is renamed into place only
when complete. A data set that is already there is never fetched again.

Layout under the root (what the loaders read)::

    cifar-10-batches-py/   data_batch_1..5, test_batch, batches.meta
    cifar-100-python/      train, test, meta
    mnist/                 train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...
    fashion-mnist/         the same four files
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 16


@dataclass(frozen=True)
class Source:
    """Where a data set comes from: files (name, md5) under ``base_url``; ``folder`` is
    what exists under the root when it is installed; ``archive`` files are .tar.gz to
    extract (into the root), other files are kept as they are in ``folder``."""

    name: str
    base_url: str
    files: tuple[tuple[str, str], ...]
    folder: str
    archive: bool = False
    homepage: str = ""
    mirrors: tuple[str, ...] = field(default=())


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")  # fmt: skip

# Checksums as published (CIFAR: the CIFAR page; MNIST / Fashion-MNIST: the lists
# torchvision's datasets check, which are the publishers' files).
SOURCES: dict[str, Source] = {
    "cifar10": Source(
        "cifar10", "https://www.cs.toronto.edu/~kriz/",
        (("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        "cifar-10-batches-py", archive=True,
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": Source(
        "cifar100", "https://www.cs.toronto.edu/~kriz/",
        (("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),),
        "cifar-100-python", archive=True,
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "mnist": Source(
        "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
        tuple(zip(_MNIST_FILES, ("f68b3c2dcbeaaa9fbdd348bbdeb94873",
                                 "d53e105ee54ea40749a09fcbcd1e9432",
                                 "9fb629c4189551a2d022fa330f9573f3",
                                 "ec29112dd5afa0611ce80d1b7f02629c"))),
        "mnist", homepage="http://yann.lecun.com/exdb/mnist/",
        mirrors=("http://yann.lecun.com/exdb/mnist/",),
    ),
    "fashion-mnist": Source(
        "fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        tuple(zip(_MNIST_FILES, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                                 "25c81989df183df01b3e8a0aad5dffbe",
                                 "bef4ecab320f06d8554ea6380940ec79",
                                 "bb300cfdad3c16e7a12a480ee83cd310"))),
        "fashion-mnist", homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
}  # fmt: skip
DOWNLOADABLE = tuple(SOURCES)


class ChecksumError(ValueError):
    """A downloaded file's checksum is not the published one (the file was removed)."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root``, else ``$MINIRES_DATA``, else the user cache folder
    (``$XDG_CACHE_HOME/minires``, default ``~/.cache/minires``)."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get("MINIRES_DATA"):
        return Path(os.environ["MINIRES_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "minires"


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_installed(name: str, root: str | os.PathLike | None = None) -> bool:
    """True if data set ``name``'s files are in place under the root (nothing to fetch)."""
    src = _source(name)
    folder = data_root(root) / src.folder
    if src.archive:
        return (folder / ".minires-verified").exists() or _cifar_complete(name, folder)
    return all((folder / f).exists() for f, _ in src.files)


def _cifar_complete(name: str, folder: Path) -> bool:
    need = ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)] if name == "cifar10" \
        else ["train", "test"]  # fmt: skip
    return all((folder / f).exists() for f in need)


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; downloadable: {list(SOURCES)}")
    return SOURCES[name]


def manual_steps(name: str, root: str | os.PathLike | None = None) -> str:
    """How to get data set ``name`` by hand (printed when the network fails)."""
    src, r = _source(name), data_root(root)
    lines = [f"To install {name} by hand: download"]
    lines += [f"    {src.base_url}{f}   (md5 {md5})" for f, md5 in src.files]
    if src.archive:
        lines.append(f"check it (md5sum FILE) and extract it: mkdir -p {r} && tar -xzf "
                     f"{src.files[0][0]} -C {r}  (gives {r / src.folder})")  # fmt: skip
    else:
        lines.append(f"check them (md5sum FILE) and put them, still gzipped, in {r / src.folder}")
    if src.homepage:
        lines.append(f"(data set page: {src.homepage}; another mirror: --mirror URL)")
    return "\n".join(lines)


def fetch(
    url: str,
    dest: str | os.PathLike,
    md5: str,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest``, verified against ``md5``, atomically.

    - ``dest`` already there with the right checksum: nothing is fetched.
    - Data streams into ``dest.part``; if that exists from an interrupted call, the
      download resumes from its end (HTTP Range; a server that ignores Range restarts).
    - On completion the MD5 is checked *before* ``dest.part`` becomes ``dest``; on a
      mismatch the partial file is removed and `ChecksumError` raised.
    - A broken connection raises ConnectionError and keeps ``dest.part`` for resuming.

    Returns:
        ``dest`` as a Path.
    """
    dest = Path(dest)
    if dest.exists():
        if md5sum(dest) == md5:
            return dest
        dest.unlink()  # a corrupt copy is never used
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "minires"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the part is complete
            resp = None
        else:
            raise ConnectionError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"cannot reach {url}: {reason}") from exc
    if resp is not None:
        with resp:
            status = getattr(resp, "status", 200)
            mode = "ab" if have and status == 206 else "wb"
            if mode == "wb":
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
            bar = _bar(total, have, dest.name, progress)
            try:
                with open(part, mode) as f:
                    while True:
                        try:
                            block = resp.read(CHUNK)
                        except (OSError, ValueError) as exc:  # reset, timeout, truncated
                            raise ConnectionError(
                                f"download of {url} interrupted after {f.tell():,} bytes "
                                f"({exc}); run the same command again to resume"
                            ) from exc
                        if not block:
                            break
                        f.write(block)
                        if bar is not None:
                            bar.update(len(block))
                    got = f.tell()
            finally:
                if bar is not None:
                    bar.close()
            if total is not None and got < total:
                raise ConnectionError(
                    f"download of {url} stopped at {got:,} of {total:,} bytes; run the same "
                    "command again to resume"
                )
    digest = md5sum(part)
    if digest != md5:
        part.unlink()
        raise ChecksumError(
            f"{url}: checksum mismatch (md5 {digest}, published {md5}); the download was "
            "removed. The mirror may serve a different file: try again or use --mirror"
        )
    os.replace(part, dest)
    return dest


def _bar(total: int | None, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True,
                unit_divisor=1024, dynamic_ncols=True)  # fmt: skip


def download(
    name: str,
    root: str | os.PathLike | None = None,
    mirror: str | None = None,
    progress: bool = True,
    md5s: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Install data set ``name`` (``cifar10``, ``cifar100``, ``mnist``,
    ``fashion-mnist``) under the root (see `data_root`), verified; returns its folder.
    Does nothing if it is already installed.

    Args:
        mirror: base URL to fetch the same file names from instead of the publisher's.
        md5s: checksums to use instead of the published ones, by file name (tests).
        timeout: seconds to wait for the server.

    Raises:
        ConnectionError: the server cannot be reached (the message says how to install
            the data by hand) or the transfer broke (run again to resume).
        ChecksumError: a file is not the published one (it was removed).
    """
    src = _source(name)
    r = data_root(root)
    folder = r / src.folder
    if is_installed(name, r):
        return folder
    base = mirror.rstrip("/") + "/" if mirror else src.base_url
    created = [d for d in (folder, r) if not d.exists()]  # removed again on failure
    try:
        if src.archive:
            fname, md5 = src.files[0]
            md5 = (md5s or {}).get(fname, md5)
            archive = fetch(base + fname, r / fname, md5, progress, timeout)
            _extract_tar(archive, r, src.folder)
            (folder / ".minires-verified").write_text(f"{fname} md5 {md5}\n")
            archive.unlink()  # the verified, extracted copy is what stays
        else:
            for fname, md5 in src.files:
                fetch(base + fname, folder / fname, (md5s or {}).get(fname, md5), progress,
                      timeout)  # fmt: skip
    except ConnectionError as exc:
        if "resume" in str(exc):
            raise
        _remove_if_empty(*created)
        raise ConnectionError(f"{exc}\n{manual_steps(name, r)}") from exc
    except ChecksumError:
        _remove_if_empty(*created)
        raise
    return folder


def _remove_if_empty(*folders: Path) -> None:
    for f in folders:
        if f.is_dir() and not any(f.iterdir()):
            f.rmdir()


def _extract_tar(archive: Path, root: Path, folder: str) -> None:
    """Extract ``archive`` (a verified .tar.gz holding ``folder/...``) into a temporary
    folder under ``root``, refusing links and paths that leave it, then rename
    ``folder`` into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                p = Path(m.name)
                if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir()):
                    raise ValueError(f"{archive}: refusing archive member {m.name!r}")
                if p.parts[0] != folder:
                    raise ValueError(f"{archive}: member {m.name!r} is outside {folder}/")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.12: members checked above
                tar.extractall(tmp, members=members)
        target = root / folder
        if target.exists():  # an incomplete earlier copy
            shutil.rmtree(target)
        os.replace(tmp / folder, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

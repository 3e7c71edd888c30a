"""Datasets behind one function, :func:`load`.

Every dataset comes back as a :class:`Dataset` of numpy arrays with the same conventions:
``x`` of shape ``(N, D)`` (flattened) or ``(N, H, W, C)`` (NHWC, ``flatten=False``), one-hot
targets ``y`` of shape ``(N, C)`` (or integer labels ``(N,)`` with ``one_hot=False``) and
integer ``labels`` of shape ``(N,)``.

Names:

* ``"digits"``: scikit-learn's ``load_digits``, 1797 real 8x8 handwritten digits (10 classes)
  shipped with scikit-learn. A fixed, stratified train/test split (1297 / 500 images) that does
  not depend on ``seed``; ``seed`` only picks the subset when ``size`` is given.
* ``"mnist1d"``: MNIST-1D (Greydanus 2020, arXiv:2011.14439), generated offline by the
  ``mnist1d`` package's own generator (never its URL loader), 40 features. The whole split
  (``size=None``) is the standard dataset, 4000 train / 1000 test (5000 samples, generator
  seed 42, the published one). Larger sizes append extension blocks of 5000 fresh samples
  each, block ``k >= 1`` of a split generated with its own generator seed
  (:data:`MNIST1D_EXTENSION_SEEDS`, disjoint between the splits and from 42), so any size is
  deterministic, train and test never share a sample, and a split's rows never depend on the
  size requested (a smaller size is a prefix of a larger one, see ``load``). The generator
  rescales each block by its own mean and standard deviation (estimated from its 5000
  samples, so blocks differ only by that estimate's sampling error); ``standardize`` uses
  the standard train split for every size.
* ``"gaussian"``: ``x ~ N(0, I_d)``; ``"sphere"``: ``x`` uniform on the sphere of radius
  ``sqrt(d)`` (so each coordinate has unit variance). Default ``d = 16``. Labels are those of
  a fixed random linear teacher, ``argmax(x @ T)`` with ``T`` a ``(d, 10)`` Gaussian matrix drawn
  once (independent of ``seed``), so different seeds are different draws of the same task.
  Train and test draws use disjoint random streams; any size (default 1000 / 1000).
  Both are standardized by construction; ``standardize`` is ignored for them so that the
  sphere stays a sphere.
* ``"mnist"`` (28x28x1, 60000 / 10000) and ``"cifar10"`` (32x32x3, 50000 / 10000): read from
  the cache directory ``$NTKLIT_DATA_DIR`` (default ``~/.cache/ntklit``), subfolders ``mnist/``
  and ``cifar10/``. Missing files are downloaded from the standard sources when a network
  exists (disable with ``NTKLIT_NO_DOWNLOAD=1``), written to a temporary ``.part`` file, and
  moved into place only after their size and SHA-256 match; a cached file with a wrong
  checksum is never used. Offline and uncached, :class:`DataUnavailableError` (a
  ``FileNotFoundError``) names the files, their checksums, the URLs and the folder to put
  them in.

Subsets (``size`` given) are prefixes: for the same ``name``, ``split`` and ``seed``, the examples
of ``size=n`` are the first ``n`` examples of any larger ``size``. The two splits of every
dataset are disjoint (fixed datasets: disjoint index sets of the source; ``mnist1d``: disjoint
generator seeds; synthetic: independent random streams).

Standardization (``standardize=True``) subtracts the per-feature mean and divides by the
per-feature standard deviation of the full **train** split (features with zero variance are
only centred), for both splits, so train and test share one transformation.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import random
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntklit import _validate

__all__ = [
    "Dataset",
    "load",
    "NAMES",
    "SPLITS",
    "RemoteFile",
    "SOURCES",
    "data_dir",
    "download",
    "DataUnavailableError",
    "ChecksumError",
    "MNIST1D_EXTENSION_SEEDS",
]

NAMES: tuple[str, ...] = ("digits", "mnist1d", "gaussian", "sphere", "mnist", "cifar10")
SPLITS: tuple[str, ...] = ("train", "test")
_DTYPES = ("float32", "float64")

_DIGITS_TEST = 500
_SYNTH_DIM = 16
_SYNTH_CLASSES = 10
_SYNTH_DEFAULT_SIZE = 1000
_MNIST1D_SEED = 42  # the published dataset
_MNIST1D_BLOCK = 5000  # samples per extension block
#: Generator seed of extension block ``k >= 1`` of each ``mnist1d`` split: base + k.
MNIST1D_EXTENSION_SEEDS: dict[str, int] = {"train": 1_000_000, "test": 2_000_000}


class DataUnavailableError(FileNotFoundError):
    """A cached dataset is missing and could not be downloaded."""


class ChecksumError(OSError):
    """A file's size or SHA-256 does not match the expected value."""


@dataclass(frozen=True)
class Dataset:
    """A dataset split as numpy arrays.

    Attributes:
      x: inputs, ``(N, D)`` flattened or ``(N, H, W, C)`` images.
      y: targets, one-hot ``(N, num_classes)`` or integer ``(N,)``.
      labels: integer class labels, ``(N,)``.
      num_classes: number of classes ``C``.
      name: dataset name (one of ``NAMES``).
      split: ``"train"`` or ``"test"``.
    """

    x: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class RemoteFile:
    """A file of a cached dataset: its name, size in bytes and SHA-256."""

    name: str
    size: int
    sha256: str


@dataclass
class _Source:
    folder: str
    files: tuple[RemoteFile, ...]
    mirrors: list[str] = field(default_factory=list)


#: Files and download mirrors of the cached datasets (tests point ``mirrors`` at a local server).
SOURCES: dict[str, _Source] = {
    "mnist": _Source(
        folder="mnist",
        files=(
            RemoteFile(
                "train-images-idx3-ubyte.gz",
                9912422,
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz",
                28881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                1648877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                4542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        ),
        mirrors=[
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ],
    ),
    "cifar10": _Source(
        folder="cifar10",
        files=(
            RemoteFile(
                "cifar-10-binary.tar.gz",
                170052171,
                "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
            ),
        ),
        mirrors=["https://www.cs.toronto.edu/~kriz/"],
    ),
}


def data_dir() -> Path:
    """The cache directory: ``$NTKLIT_DATA_DIR`` or ``~/.cache/ntklit``."""
    env = os.environ.get("NTKLIT_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ntklit"


# ----------------------------------------------------------------------------- validation


def _check_load_args(name, split, size, seed, dtype):
    _validate.choice("name", name, NAMES)
    _validate.choice("split", split, SPLITS)
    size = _validate.integer("size", size, minimum=1, allow_none=True)
    seed = _validate.integer("seed", seed, minimum=0)
    try:
        dt = str(np.dtype(dtype))
    except TypeError:
        dt = dtype
    _validate.choice("dtype", dt, _DTYPES)
    return size, seed


# ----------------------------------------------------------------------------- checksums/cache


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, rf: RemoteFile) -> None:
    size = path.stat().st_size
    if size != rf.size:
        raise ChecksumError(
            f"{path}: size {size} bytes, expected {rf.size} (partial or corrupt file)"
        )
    digest = _sha256(path)
    if digest != rf.sha256:
        raise ChecksumError(f"{path}: SHA-256 {digest}, expected {rf.sha256} (corrupt file)")


def _fetch_one(rf: RemoteFile, dest: Path, mirrors: list[str], timeout: float) -> list[str]:
    """Download ``rf`` into ``dest``; returns the errors of the failed mirrors."""
    errors = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + rf.name
        fd, tmp = tempfile.mkstemp(prefix=rf.name + ".", suffix=".part", dir=dest.parent)
        tmp = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
                shutil.copyfileobj(r, out, length=1 << 20)
            _verify(tmp, rf)
            os.replace(tmp, dest)
            return []
        except (OSError, urllib.error.URLError, ValueError) as e:  # ChecksumError is an OSError
            errors.append(f"{url}: {e}")
        finally:
            if tmp.exists():
                tmp.unlink()
    return errors


def _missing_message(name: str, folder: Path, bad: list[RemoteFile], errors: list[str]) -> str:
    src = SOURCES[name]
    lines = [
        f"dataset {name!r} is not available offline. Put these files in {folder}/ "
        "(set NTKLIT_DATA_DIR to change the cache directory):"
    ]
    for rf in bad:
        urls = ", ".join(m.rstrip("/") + "/" + rf.name for m in src.mirrors)
        lines.append(f"  {rf.name}  ({rf.size} bytes, sha256 {rf.sha256})  from {urls}")
    if errors:
        lines.append("download attempts failed:")
        lines += [f"  {e}" for e in errors]
    return "\n".join(lines)


def download(name: str, *, allow_download: bool | None = None, timeout: float = 30.0) -> Path:
    """Make sure the files of a cached dataset are present and verified.

    Files already in the cache are checked (size and SHA-256); a file that fails the check is
    never used (it is replaced by a verified download, or an error is raised). Downloads go to
    a temporary ``.part`` file that is moved into place only after verification.

    Args:
      name: ``"mnist"`` or ``"cifar10"``.
      allow_download: try the network for missing files; default: unless the environment
        variable ``NTKLIT_NO_DOWNLOAD`` is set to a non-empty value other than ``0``.
      timeout: seconds per network operation.

    Returns:
      The folder holding the verified files.

    Raises:
      ValueError: for a name without cached files.
      DataUnavailableError: files missing or corrupt and not downloadable; the message says
        which files to put where.
    """
    _validate.choice("name", name, sorted(SOURCES))
    if allow_download is None:
        allow_download = os.environ.get("NTKLIT_NO_DOWNLOAD", "") in ("", "0")
    src = SOURCES[name]
    folder = data_dir() / src.folder
    bad: list[RemoteFile] = []
    notes: list[str] = []
    for rf in src.files:
        path = folder / rf.name
        if path.exists():
            try:
                _verify(path, rf)
                continue
            except ChecksumError as e:
                notes.append(f"cached file rejected: {e}")
        bad.append(rf)
    if bad and allow_download:
        folder.mkdir(parents=True, exist_ok=True)
        still_bad = []
        for rf in bad:
            errs = _fetch_one(rf, folder / rf.name, src.mirrors, timeout)
            if errs:
                still_bad.append(rf)
                notes += errs
        bad = still_bad
    elif bad:
        notes.append("downloads disabled (NTKLIT_NO_DOWNLOAD or allow_download=False)")
    if bad:
        raise DataUnavailableError(_missing_message(name, folder, bad, notes))
    return folder


# ----------------------------------------------------------------------------- raw readers


def _read_idx(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (MNIST format): magic 0x00000803 images, 0x00000801 labels."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:
        raise ChecksumError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ChecksumError(f"{path}: IDX payload of {data.size} bytes, header says {dims}")
    return data.reshape(dims)


@functools.lru_cache(maxsize=4)
def _raw_mnist(split: str, folder: str):
    prefix = "train" if split == "train" else "t10k"
    x = _read_idx(Path(folder) / f"{prefix}-images-idx3-ubyte.gz")
    labels = _read_idx(Path(folder) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    if x.shape[0] != labels.shape[0]:
        raise ChecksumError(f"MNIST {split}: {x.shape[0]} images but {labels.shape[0]} labels")
    return x[..., None].astype(np.float64) / 255.0, labels


@functools.lru_cache(maxsize=4)
def _raw_cifar10(split: str, folder: str):
    members = (
        [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    )
    chunks = []
    with tarfile.open(Path(folder) / "cifar-10-binary.tar.gz", "r:gz") as tar:
        by_base = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for mname in members:
            if mname not in by_base:
                raise ChecksumError(f"CIFAR-10 archive lacks {mname}")
            buf = tar.extractfile(by_base[mname]).read()
            if len(buf) % 3073:
                raise ChecksumError(f"CIFAR-10 {mname}: {len(buf)} bytes, not records of 3073")
            chunks.append(np.frombuffer(buf, dtype=np.uint8).reshape(-1, 3073))
    rec = np.concatenate(chunks)
    labels = rec[:, 0].astype(np.int64)
    x = rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW -> HWC
    return x.astype(np.float64) / 255.0, labels


@functools.lru_cache(maxsize=1)
def _raw_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(d.target.shape[0])
    tr, te = train_test_split(idx, test_size=_DIGITS_TEST, stratify=d.target, random_state=0)
    x = d.images.astype(np.float64)[..., None]  # (N, 8, 8, 1), values 0..16
    lab = d.target.astype(np.int64)
    return {
        "train": (x[np.sort(tr)], lab[np.sort(tr)]),
        "test": (x[np.sort(te)], lab[np.sort(te)]),
    }


def _make_mnist1d(num_samples: int, seed: int):
    import mnist1d
    from mnist1d.data import make_dataset

    args = mnist1d.get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    # make_dataset seeds numpy's and Python's global RNGs: keep the caller's state intact.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@functools.lru_cache(maxsize=1)
def _mnist1d_standard():
    return _make_mnist1d(5000, _MNIST1D_SEED)


@functools.lru_cache(maxsize=64)
def _mnist1d_block(split: str, k: int):
    """Block ``k`` of an ``mnist1d`` split as read-only ``(x (n, 40), labels (n,))``.

    Block 0 is the split of the standard dataset (4000 train / 1000 test); block ``k >= 1``
    holds all 5000 samples generated with seed ``MNIST1D_EXTENSION_SEEDS[split] + k``.
    """
    if k == 0:
        d = _mnist1d_standard()
        key = "x" if split == "train" else "x_test"
        x, lab = d[key], d["y" if split == "train" else "y_test"]
    else:
        d = _make_mnist1d(_MNIST1D_BLOCK, MNIST1D_EXTENSION_SEEDS[split] + k)
        x = np.concatenate([d["x"], d["x_test"]])
        lab = np.concatenate([d["y"], d["y_test"]])
    x, lab = np.asarray(x, dtype=np.float64), np.asarray(lab, dtype=np.int64)
    x.setflags(write=False)
    lab.setflags(write=False)
    return x, lab


def _mnist1d(split: str, size: int | None, seed: int):
    """``(x, labels)`` of ``size`` examples: block 0 permuted by ``seed``, then blocks 1, 2, ...
    each permuted by ``(seed, k)``, truncated to ``size`` (a prefix for any larger size)."""
    x0, l0 = _mnist1d_block(split, 0)
    if size is None:
        return x0, l0
    xs, ls, have, k = [], [], 0, 0
    while have < size:
        xk, lk = _mnist1d_block(split, k)
        rng = np.random.default_rng(seed if k == 0 else [seed, k])
        idx = rng.permutation(xk.shape[0])[: size - have]
        xs.append(xk[idx])
        ls.append(lk[idx])
        have += idx.size
        k += 1
    return np.concatenate(xs), np.concatenate(ls)


_TEACHER_SEED = 20240229


def _synthetic(name: str, split: str, size: int, seed: int):
    d = _SYNTH_DIM
    teacher = np.random.default_rng(_TEACHER_SEED).standard_normal((d, _SYNTH_CLASSES))
    rng = np.random.default_rng([seed, SPLITS.index(split), NAMES.index(name)])
    x = rng.standard_normal((size, d))
    if name == "sphere":
        x = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(d)
    return x, np.argmax(x @ teacher, axis=1).astype(np.int64)


# ----------------------------------------------------------------------------- load


def load(
    name: str,
    split: str = "train",
    size: int | None = None,
    seed: int = 0,
    *,
    flatten: bool = True,
    standardize: bool = True,
    one_hot: bool = True,
    dtype: str = "float32",
) -> Dataset:
    """Load a dataset split.

    Args:
      name: one of ``"digits"``, ``"mnist1d"``, ``"gaussian"``, ``"sphere"``, ``"mnist"``,
        ``"cifar10"`` (see the module docstring for each).
      split: ``"train"`` or ``"test"``.
      size: number of examples; ``None`` for the whole split in its stored order (1000 for
        the synthetic ones, the standard 4000 / 1000 for ``mnist1d``). For the fixed datasets
        a subset of ``size`` examples is drawn without replacement, chosen by ``seed``; asking
        for more than the split holds raises ``ValueError``. ``mnist1d`` takes any size
        (extension blocks, see the module docstring). For every dataset, ``size=n`` gives the
        first ``n`` examples of any larger ``size`` with the same ``seed``.
      seed: picks the subset (fixed datasets) or the draw (synthetic datasets).
      flatten: ``(N, D)`` inputs; ``False`` keeps images as NHWC ``(N, H, W, C)``
        (digits ``(N, 8, 8, 1)``, mnist ``(N, 28, 28, 1)``, cifar10 ``(N, 32, 32, 3)``; 1-D
        data keeps ``(N, D)``).
      standardize: per-feature :math:`(x - \\mu_{train}) / \\sigma_{train}` with statistics of
        the whole train split; otherwise raw values (pixels scaled to ``[0, 1]``; digits keep
        their 0..16 range).
      one_hot: ``y`` as one-hot ``(N, C)`` in ``dtype``; otherwise ``y`` equals ``labels``.
      dtype: ``"float32"`` or ``"float64"`` for ``x`` (and one-hot ``y``).

    Returns:
      A :class:`Dataset`.

    Raises:
      ValueError: unknown name/split/dtype, bad size or seed.
      DataUnavailableError: ``mnist``/``cifar10`` not cached and not downloadable.
    """
    size, seed = _check_load_args(name, split, size, seed, dtype)
    num_classes = 10
    if name == "mnist1d":
        x, labels = _mnist1d(split, size, seed)
        x_train_stats = _mnist1d_block("train", 0)[0]
    elif name in ("gaussian", "sphere"):
        x, labels = _synthetic(
            name, split, _SYNTH_DEFAULT_SIZE if size is None else int(size), int(seed)
        )
        x_train_stats = None
    else:
        if name == "digits":
            raw = _raw_digits()
            x_all, lab_all = raw[split]
            x_tr = raw["train"][0]
        elif name == "mnist":
            folder = str(download("mnist"))
            x_all, lab_all = _raw_mnist(split, folder)
            x_tr = _raw_mnist("train", folder)[0] if standardize else None
        else:  # cifar10
            folder = str(download("cifar10"))
            x_all, lab_all = _raw_cifar10(split, folder)
            x_tr = _raw_cifar10("train", folder)[0] if standardize else None
        n_all = x_all.shape[0]
        if size is not None:
            if size > n_all:
                raise ValueError(f"size must be at most {n_all} for {name!r} {split}, got {size}")
            idx = np.random.default_rng(int(seed)).permutation(n_all)[:size]
            x, labels = x_all[idx], lab_all[idx]
        else:
            x, labels = x_all, lab_all
        x_train_stats = x_tr
    if standardize and x_train_stats is not None:
        mu = x_train_stats.mean(axis=0)
        sd = x_train_stats.std(axis=0)
        x = (x - mu) / np.where(sd > 0, sd, 1.0)
    if flatten:
        x = x.reshape(x.shape[0], -1)
    x = np.ascontiguousarray(x, dtype=dtype)
    labels = np.asarray(labels, dtype=np.int64)
    y = np.eye(num_classes, dtype=dtype)[labels] if one_hot else labels.copy()
    for arr in (x, y, labels):
        arr.setflags(write=False)
    return Dataset(x=x, y=y, labels=labels, num_classes=num_classes, name=name, split=split)

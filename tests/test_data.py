"""Tests of ntklit.data: every dataset name, preprocessing, and the cached-download path.

The download path is exercised against small archives in the real MNIST (gzipped IDX) and
CIFAR-10 (binary tar.gz) formats served by an HTTP server on 127.0.0.1 inside the test.
"""

import gzip
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from ntklit import data

# ----------------------------------------------------------------------------- fixed datasets


def test_digits_shapes_split_and_onehot():
    tr = data.load("digits", "train")
    te = data.load("digits", "test")
    assert tr.x.shape == (1297, 64) and te.x.shape == (500, 64)
    assert tr.y.shape == (1297, 10) and tr.x.dtype == np.float32
    np.testing.assert_array_equal(tr.y.argmax(1), tr.labels)
    np.testing.assert_array_equal(tr.y.sum(1), 1.0)
    assert tr.num_classes == 10 and tr.name == "digits" and tr.split == "train"
    # standardization uses train statistics: train features have mean 0, std 1 or 0
    x64 = data.load("digits", "train", dtype="float64").x
    np.testing.assert_allclose(x64.mean(0), 0.0, atol=1e-12)
    sd = x64.std(0)
    assert np.all((np.abs(sd - 1) < 1e-12) | (sd < 1e-12))
    # test split is not standardized by its own statistics
    assert np.abs(data.load("digits", "test", dtype="float64").x.mean(0)).max() > 1e-3
    # the split does not depend on the seed; the images are sklearn's
    from sklearn.datasets import load_digits

    raw = data.load("digits", "train", standardize=False, seed=5)
    raw0 = data.load("digits", "train", standardize=False, seed=0)
    np.testing.assert_array_equal(raw.x, raw0.x)
    d = load_digits()
    all_rows = {r.tobytes() + bytes([lab]) for r, lab in zip(d.data.astype(np.float32), d.target)}
    assert all(r.tobytes() + bytes([lab]) in all_rows for r, lab in zip(raw.x, raw.labels))
    # train and test disjoint in index (1297 + 500 = 1797 images)
    assert len(tr) + len(te) == d.target.shape[0]


def test_digits_nhwc_subset_and_int_targets():
    ds = data.load("digits", "test", size=50, seed=1, flatten=False, one_hot=False)
    assert ds.x.shape == (50, 8, 8, 1)
    assert ds.y.shape == (50,) and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.y, ds.labels)
    again = data.load("digits", "test", size=50, seed=1, flatten=False, one_hot=False)
    np.testing.assert_array_equal(ds.x, again.x)
    other = data.load("digits", "test", size=50, seed=2, flatten=False, one_hot=False)
    assert not np.array_equal(ds.x, other.x)
    with pytest.raises(ValueError, match="size"):
        data.load("digits", "test", size=501)
    with pytest.raises(ValueError):
        ds.x[0, 0, 0, 0] = 1.0  # read-only arrays


def test_mnist1d_offline_deterministic_and_global_rng_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    tr = data.load("mnist1d", "train", size=200)
    after = np.random.get_state()[1]
    np.testing.assert_array_equal(before, after)
    assert tr.x.shape == (200, 40) and tr.y.shape == (200, 10)
    te = data.load("mnist1d", "test")
    assert te.x.shape == (1000, 40)
    np.testing.assert_array_equal(tr.x, data.load("mnist1d", "train", size=200).x)
    assert set(np.unique(data.load("mnist1d", "train").labels)) == set(range(10))


def test_mnist1d_standard_split_is_the_published_dataset():
    """size=None is the package's default dataset (5000 samples, seed 42), row for row."""
    import mnist1d
    from mnist1d.data import make_dataset

    state = np.random.get_state()
    d = make_dataset(mnist1d.get_dataset_args())
    np.random.set_state(state)
    for split, kx, ky in (("train", "x", "y"), ("test", "x_test", "y_test")):
        ds = data.load("mnist1d", split, standardize=False, dtype="float64")
        np.testing.assert_array_equal(ds.x, d[kx])
        np.testing.assert_array_equal(ds.labels, d[ky])


def _rows(x):
    return {r.tobytes() for r in np.asarray(x, dtype=np.float64)}


def _n_affine_duplicates(a, b):
    """Rows of ``a`` equal to a row of ``b`` up to a shift and a positive scale (row
    correlation 1): the MNIST-1D generator rescales a whole dataset by its own mean and std,
    so the same sample generated in two datasets is equal only up to such a map."""

    def z(x):
        return (x - x.mean(1, keepdims=True)) / np.linalg.norm(
            x - x.mean(1, keepdims=True), axis=1, keepdims=True
        )

    return int(np.sum((z(a) @ z(b).T).max(1) > 1 - 1e-9))


@pytest.fixture
def small_mnist1d_blocks(monkeypatch):
    """mnist1d extension blocks of 300 samples (instead of 5000) so the tests stay fast;
    the code path (blocks, seeds, prefixes) is the same."""
    data._mnist1d_block.cache_clear()
    monkeypatch.setattr(data, "_MNIST1D_BLOCK", 300)
    yield
    data._mnist1d_block.cache_clear()


def test_mnist1d_any_size_deterministic_prefix_and_disjoint(small_mnist1d_blocks):
    big = {
        sp: data.load("mnist1d", sp, size=n, seed=3, dtype="float64", standardize=False)
        for sp, n in (("train", 4700), ("test", 1400))
    }  # 4000 + 2 blocks, 1000 + 2 blocks
    # train and test share no sample, not even up to the generator's rescaling (the old
    # regenerate-above-4000 scheme put 353 of the 1000 test samples into train at size 4500)
    assert not _rows(big["train"].x) & _rows(big["test"].x)
    assert _n_affine_duplicates(big["test"].x, big["train"].x) == 0
    for sp in big:
        assert len(_rows(big[sp].x)) == len(big[sp])
    # a smaller size is a prefix of a larger one (across the block boundaries)
    for sp, sizes in (("train", (10, 4000, 4300, 4301)), ("test", (999, 1000, 1250))):
        for n in sizes:
            small = data.load("mnist1d", sp, size=n, seed=3, dtype="float64", standardize=False)
            np.testing.assert_array_equal(small.x, big[sp].x[:n])
            np.testing.assert_array_equal(small.labels, big[sp].labels[:n])
    # the extension blocks cover every class and are new samples (not block 0 again)
    ext = big["train"].labels[4000:]
    assert set(np.unique(ext)) == set(range(10))
    std_train = data.load("mnist1d", "train", standardize=False, dtype="float64").x
    assert _n_affine_duplicates(big["train"].x[4000:], std_train) == 0
    assert _n_affine_duplicates(big["train"].x[4000:4300], big["train"].x[4300:]) == 0
    # regenerating from scratch gives the same rows (no dependence on cache or call order)
    data._mnist1d_block.cache_clear()
    data._mnist1d_standard.cache_clear()
    again = data.load("mnist1d", "train", size=4700, seed=3, dtype="float64", standardize=False)
    np.testing.assert_array_equal(again.x, big["train"].x)
    # standardization uses the standard train split whatever the size
    a = data.load("mnist1d", "train", size=4700, seed=3, dtype="float64")
    b = data.load("mnist1d", "train", size=50, seed=3, dtype="float64")
    np.testing.assert_array_equal(a.x[:50], b.x)
    # another seed orders the same samples differently
    other = data.load("mnist1d", "train", size=4000, seed=4, dtype="float64", standardize=False)
    assert _rows(other.x) == _rows(big["train"].x[:4000])
    assert not np.array_equal(other.x, big["train"].x[:4000])


@pytest.mark.parametrize("name,n_big", [("digits", 500), ("gaussian", 2000), ("sphere", 2000)])
def test_splits_disjoint_deterministic_and_prefix(name, n_big):
    kw = dict(dtype="float64", standardize=False)
    tr = data.load(name, "train", size=n_big, seed=7, **kw)
    te = data.load(name, "test", size=n_big, seed=7, **kw)
    assert not _rows(tr.x) & _rows(te.x)
    assert len(_rows(tr.x)) == n_big
    for n in (1, 37, n_big - 1):
        small = data.load(name, "train", size=n, seed=7, **kw)
        np.testing.assert_array_equal(small.x, tr.x[:n])
        np.testing.assert_array_equal(small.labels, tr.labels[:n])
    np.testing.assert_array_equal(data.load(name, "train", size=n_big, seed=7, **kw).x, tr.x)
    if name == "digits":  # the whole splits are disjoint as well
        full = {sp: data.load(name, sp, **kw).x for sp in ("train", "test")}
        assert not _rows(full["train"]) & _rows(full["test"])


@pytest.mark.parametrize("name", ["gaussian", "sphere"])
def test_synthetic(name):
    ds = data.load(name, "train", size=3000, seed=0, dtype="float64")
    assert ds.x.shape == (3000, 16)
    if name == "sphere":
        np.testing.assert_allclose(np.linalg.norm(ds.x, axis=1), 4.0, rtol=1e-12)
    # unit variance per coordinate (either law): sampling error ~ sqrt(2/3000) ~ 0.026
    assert np.abs(ds.x.var(0) - 1).max() < 0.15
    assert len(np.unique(ds.labels)) >= 5
    te = data.load(name, "test", size=3000, seed=0, dtype="float64")
    assert not np.allclose(ds.x[:10], te.x[:10])
    s1 = data.load(name, "train", size=3000, seed=1, dtype="float64")
    assert not np.allclose(ds.x[:10], s1.x[:10])
    # the teacher is fixed across seeds: a linear classifier fit on seed 0 transfers to seed 1
    w, *_ = np.linalg.lstsq(ds.x, ds.y, rcond=None)
    acc = np.mean(np.argmax(s1.x @ w, 1) == s1.labels)
    assert acc > 0.5, acc


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(name="imagenet"), "name must be one of"),
        (dict(name="digits", split="valid"), "split must be one of"),
        (dict(name="digits", size=0), "size"),
        (dict(name="digits", size=2.5), "size"),
        (dict(name="digits", seed=-1), "seed"),
        (dict(name="digits", dtype="int8"), "dtype"),
    ],
)
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        data.load(**kw)


# ----------------------------------------------------------------------------- cached datasets


def _idx_gz(arr: np.ndarray) -> bytes:
    code = 0x0800 | arr.ndim
    header = code.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes())


def _fake_mnist(rng, n_train=30, n_test=12):
    xs = {
        s: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for s, n in (("train", n_train), ("t10k", n_test))
    }
    ls = {s: rng.integers(0, 10, xs[s].shape[0], dtype=np.uint8) for s in xs}
    files = {}
    for s in xs:
        files[f"{s}-images-idx3-ubyte.gz"] = _idx_gz(xs[s])
        files[f"{s}-labels-idx1-ubyte.gz"] = _idx_gz(ls[s])
    return files, xs, ls


def _fake_cifar(rng, per_batch=6, n_test=5):
    buf = io.BytesIO()
    content = {}
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
        for nm in names:
            n = n_test if nm == "test_batch.bin" else per_batch
            rec = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
            rec[:, 0] %= 10
            content[nm] = rec
            info = tarfile.TarInfo("cifar-10-batches-bin/" + nm)
            b = rec.tobytes()
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
    return {"cifar-10-binary.tar.gz": buf.getvalue()}, content


class _Server:
    """A static file server on 127.0.0.1 that counts requests; files can be swapped."""

    def __init__(self, files):
        self.files = dict(files)
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append(name)
                body = outer.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _point_sources(monkeypatch, name, files, mirrors):
    src = data.SOURCES[name]
    rfs = tuple(
        data.RemoteFile(n, len(b), hashlib.sha256(b).hexdigest()) for n, b in files.items()
    )
    monkeypatch.setitem(data.SOURCES, name, data._Source(src.folder, rfs, list(mirrors)))
    data._raw_mnist.cache_clear()
    data._raw_cifar10.cache_clear()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NTKLIT_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NTKLIT_NO_DOWNLOAD", raising=False)
    return tmp_path / "cache"


def test_mnist_download_from_local_server(cache, monkeypatch):
    files, xs, ls = _fake_mnist(np.random.default_rng(0))
    srv = _Server(files)
    try:
        _point_sources(monkeypatch, "mnist", files, [srv.url])
        ds = data.load("mnist", "test", standardize=False, flatten=False, one_hot=False)
        assert ds.x.shape == (12, 28, 28, 1)
        np.testing.assert_allclose(ds.x[..., 0], xs["t10k"] / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(ds.labels, ls["t10k"])
        assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(files)
        n_req = len(srv.requests)
        assert n_req == 4
        # second load uses the verified cache, no new requests; train stats standardize
        tr = data.load("mnist", "train", dtype="float64")
        assert len(srv.requests) == n_req and tr.x.shape == (30, 784)
        np.testing.assert_allclose(tr.x.mean(0), 0.0, atol=1e-12)
    finally:
        srv.close()


def test_cifar10_download_from_local_server(cache, monkeypatch):
    files, content = _fake_cifar(np.random.default_rng(1))
    srv = _Server(files)
    try:
        _point_sources(monkeypatch, "cifar10", files, [srv.url])
        ds = data.load("cifar10", "train", standardize=False, flatten=False, one_hot=False)
        assert ds.x.shape == (30, 32, 32, 3)
        rec = content["data_batch_1.bin"][0]
        np.testing.assert_allclose(ds.x[0, :, :, 0].ravel(), rec[1:1025] / 255.0, rtol=1e-6)
        np.testing.assert_allclose(ds.x[0, 0, 1, :], rec[[2, 1026, 2050]] / 255.0, rtol=1e-6)
        assert ds.labels[0] == rec[0]
        te = data.load("cifar10", "test", size=3)
        assert te.x.shape == (3, 3072) and te.y.shape == (3, 10)
    finally:
        srv.close()


def test_corrupt_download_is_detected_and_never_used(cache, monkeypatch):
    files, _, _ = _fake_mnist(np.random.default_rng(2))
    good = dict(files)
    bad = dict(files)
    name = "train-images-idx3-ubyte.gz"
    bad[name] = files[name][:-100]  # partial download
    bad["t10k-images-idx3-ubyte.gz"] = bytes(
        len(files["t10k-images-idx3-ubyte.gz"])
    )  # right size, wrong bytes
    srv = _Server(bad)
    try:
        _point_sources(monkeypatch, "mnist", good, [srv.url])
        with pytest.raises(data.DataUnavailableError) as e:
            data.load("mnist", "train")
        msg = str(e.value)
        assert name in msg and "t10k-images-idx3-ubyte.gz" in msg and "SHA-256" in msg
        present = {p.name for p in (cache / "mnist").iterdir()}
        assert name not in present and "t10k-images-idx3-ubyte.gz" not in present
        assert not any(p.endswith(".part") for p in present)
        # a corrupt file already in the cache is rejected, then replaced by a verified one
        (cache / "mnist" / name).write_bytes(b"garbage")
        srv.files = good
        ds = data.load("mnist", "train", standardize=False)
        assert ds.x.shape == (30, 784)
        assert (cache / "mnist" / name).read_bytes() == files[name]
    finally:
        srv.close()


def test_offline_missing_files_clear_error(cache, monkeypatch):
    monkeypatch.setenv("NTKLIT_NO_DOWNLOAD", "1")
    data._raw_mnist.cache_clear()
    with pytest.raises(data.DataUnavailableError) as e:
        data.load("mnist", "train")
    msg = str(e.value)
    for rf in data.SOURCES["mnist"].files:
        assert rf.name in msg and rf.sha256 in msg
    assert str(cache / "mnist") in msg and "NTKLIT_DATA_DIR" in msg
    with pytest.raises(FileNotFoundError, match="cifar-10-binary.tar.gz"):
        data.load("cifar10", "test")


def test_unreachable_mirror_reports_download_failure(cache, monkeypatch):
    files, _, _ = _fake_mnist(np.random.default_rng(3))
    # port 9 on 127.0.0.1 (discard) is closed here: connection refused, no internet used
    _point_sources(monkeypatch, "mnist", files, ["http://127.0.0.1:9/"])
    with pytest.raises(data.DataUnavailableError, match="download attempts failed"):
        data.download("mnist", timeout=2.0)

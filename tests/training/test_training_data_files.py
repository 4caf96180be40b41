"""Readers for local MNIST (IDX) and CIFAR (pickle) files, on tiny files written in those formats."""

from __future__ import annotations

import codecs
import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import DatasetError, load_dataset
from training.data.cifar import CIFAR10_TEST, CIFAR10_TRAIN, safe_load
from training.data.idx import IMAGES_MAGIC, LABELS_MAGIC, parse_idx


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(directory: Path, *, n_train: int, n_test: int, compress: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        arrays[prefix] = (images, labels)
        for kind, arr, magic in (
            ("images-idx3", images, IMAGES_MAGIC),
            ("labels-idx1", labels, LABELS_MAGIC),
        ):
            payload = idx_bytes(arr, magic)
            name = f"{prefix}-{kind}-ubyte"
            if compress:
                (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (directory / name).write_bytes(payload)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_round_trip(tmp_path: Path, compress: bool, name: str) -> None:
    arrays = write_idx(tmp_path, n_train=12, n_test=5, compress=compress, seed=1)
    data = load_dataset(name, tmp_path)
    assert data.train.inputs.shape == (12, 1, 28, 28)
    assert data.test.inputs.shape == (5, 1, 28, 28)
    assert data.train.inputs.dtype == torch.float32
    assert data.train.targets.dtype == torch.int64
    assert data.train.targets.tolist() == arrays["train"][1].tolist()
    assert data.test.targets.tolist() == arrays["t10k"][1].tolist()
    # Standardization is affine and increasing, so pixel order is preserved exactly.
    raw = arrays["train"][0].reshape(-1).astype(np.int64)
    got = data.train.inputs.reshape(-1).numpy()
    assert np.array_equal(np.argsort(raw, kind="stable"), np.argsort(got, kind="stable"))
    assert abs(float(got.mean())) < 1e-5
    assert abs(float(got.std()) - 1.0) < 1e-4


def test_idx_torchvision_layout(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, n_train=3, n_test=2, compress=True, seed=2)
    assert len(load_dataset("mnist", tmp_path).train) == 3


def test_idx_wrong_magic_raises() -> None:
    labels = np.arange(4, dtype=np.uint8)
    with pytest.raises(DatasetError, match="magic 0x00000801, expected 0x00000803"):
        parse_idx(idx_bytes(labels, LABELS_MAGIC), expected_magic=IMAGES_MAGIC)


def test_idx_truncated_raises() -> None:
    payload = idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8), IMAGES_MAGIC)
    with pytest.raises(DatasetError, match="header says"):
        parse_idx(payload[:-1], expected_magic=IMAGES_MAGIC)


def test_idx_count_mismatch_raises(tmp_path: Path) -> None:
    write_idx(tmp_path, n_train=4, n_test=2, compress=False, seed=3)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        idx_bytes(np.zeros(3, dtype=np.uint8), LABELS_MAGIC)
    )
    with pytest.raises(DatasetError, match="4 images but 3 labels"):
        load_dataset("mnist", tmp_path)


def test_idx_corrupt_gzip_raises(tmp_path: Path) -> None:
    write_idx(tmp_path, n_train=2, n_test=2, compress=True, seed=4)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)


def test_missing_directory_names_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset("cifar10", tmp_path / "absent")
    with pytest.raises(DatasetError, match="data_batch_1"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="pass a data dir"):
        load_dataset("cifar100")


def write_cifar(
    directory: Path, files: tuple[str, ...], label_key: bytes, n: int, classes: int
) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    written = {}
    for f in files:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, classes, size=n).tolist()
        batch = {
            b"batch_label": b"tiny batch",
            b"data": data,
            label_key: labels,
            b"filenames": [b"x.png"] * n,
        }
        if label_key == b"fine_labels":
            batch[b"coarse_labels"] = [0] * n
        # Protocol 2, as the original files (written by Python 2's cPickle).
        (directory / f).write_bytes(pickle.dumps(batch, protocol=2))
        written[f] = (data, labels)
    return written


def test_cifar10_round_trip(tmp_path: Path) -> None:
    files = (*CIFAR10_TRAIN, *CIFAR10_TEST)
    written = write_cifar(tmp_path / "cifar-10-batches-py", files, b"labels", n=3, classes=10)
    data = load_dataset("cifar10", tmp_path)  # the parent directory is accepted
    assert data.train.inputs.shape == (15, 3, 32, 32)
    assert data.test.inputs.shape == (3, 3, 32, 32)
    expected = [y for i in range(1, 6) for y in written[f"data_batch_{i}"][1]]
    assert data.train.targets.tolist() == expected
    # Channel layout: values 0..1023 of a row are the red plane.
    first = written["data_batch_1"][0][0]
    red = data.train.inputs[0, 0].reshape(-1).numpy()
    assert np.array_equal(np.argsort(first[:1024], kind="stable"), np.argsort(red, kind="stable"))
    per_channel_mean = data.train.inputs.mean(dim=(0, 2, 3))
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=1e-5)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-100-python"
    written = write_cifar(directory, ("train", "test"), b"fine_labels", n=4, classes=100)
    data = load_dataset("cifar100", directory)
    assert data.num_classes == 100
    assert data.test.targets.tolist() == written["test"][1]


def test_cifar_wrong_key_raises(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-100-python"
    write_cifar(directory, ("train", "test"), b"labels", n=2, classes=10)
    with pytest.raises(DatasetError, match="fine_labels"):
        load_dataset("cifar100", directory)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_raises_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2)
    with pytest.raises(DatasetError, match="system is not allowed"):
        safe_load(payload)
    assert not marker.exists()
    # The same payload placed as a real batch file is refused by the loader too.
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory, (*CIFAR10_TRAIN, *CIFAR10_TEST), b"labels", n=1, classes=10)
    (directory / "data_batch_3").write_bytes(payload)
    with pytest.raises(DatasetError, match="data_batch_3"):
        load_dataset("cifar10", directory)
    assert not marker.exists()


class _Rot13:
    def __reduce__(self) -> tuple:
        return (codecs.encode, ("text", "rot13"))


def test_forbidden_codec_raises() -> None:
    # _codecs.encode is allowed only for the latin-1 round trip Python 3 uses for bytes.
    payload = pickle.dumps(_Rot13(), protocol=2)
    assert b"_codecs" in payload
    with pytest.raises(DatasetError, match="rot13"):
        safe_load(payload)


def py2_style_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle (protocol 2) wrote the originals: str opcodes, numpy.core."""

    def short(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b

    def int1(v: int) -> bytes:
        return b"K" + bytes([v])

    rows, cols = data.shape
    out = b"\x80\x02}(" + short(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + int1(0) + b"\x85"
    out += short(b"b") + b"\x87R(" + int1(1) + int1(rows) + b"M" + struct.pack("<H", cols)
    out += b"\x86cnumpy\ndtype\n" + short(b"u1") + int1(0) + int1(1) + b"\x87R(" + int1(3)
    out += short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff" + int1(0) + b"tb\x89"
    out += b"T" + struct.pack("<i", data.nbytes) + data.tobytes() + b"tb"
    out += short(b"labels") + b"](" + b"".join(int1(v) for v in labels) + b"eu."
    return out


def test_python2_pickle_layout_is_read(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    data = np.random.default_rng(6).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    for name in (*CIFAR10_TRAIN, *CIFAR10_TEST):
        (directory / name).write_bytes(py2_style_batch(data, [3, 9]))
    loaded = load_dataset("cifar10", directory)
    assert loaded.train.targets.tolist() == [3, 9] * 5
    green = loaded.test.inputs[1, 1].reshape(-1).numpy()
    assert np.array_equal(
        np.argsort(data[1, 1024:2048], kind="stable"), np.argsort(green, kind="stable")
    )

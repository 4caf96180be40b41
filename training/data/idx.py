"""Reader for MNIST-style IDX files (MNIST, Fashion-MNIST), gzip-compressed or raw.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian magic number
``0x0000TTNN`` where ``TT`` is the element type (``0x08`` = unsigned byte) and ``NN`` the number
of dimensions, then ``NN`` big-endian uint32 sizes, then the elements in C order. Image files
use magic ``0x00000803`` (N x rows x cols) and label files ``0x00000801`` (N).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from training.data.base import DatasetError, LoadedDataset, make_split, standardize

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _open_bytes(directory: Path, stem: str) -> tuple[bytes, Path]:
    """Read ``stem.gz`` if present, else ``stem``; return the decoded bytes and the path."""
    gz_path = directory / f"{stem}.gz"
    raw_path = directory / stem
    try:
        if gz_path.is_file():
            with gzip.open(gz_path, "rb") as fh:
                return fh.read(), gz_path
        if raw_path.is_file():
            return raw_path.read_bytes(), raw_path
    except (OSError, EOFError) as exc:  # gzip raises BadGzipFile (an OSError) or EOFError
        raise DatasetError(f"{stem}: cannot read ({exc})") from exc
    raise DatasetError(f"{directory}: missing {stem} (or {stem}.gz)")


def parse_idx(data: bytes, *, expected_magic: int, name: str = "idx") -> np.ndarray:
    """Parse an unsigned-byte IDX payload.

    Args:
        data: the whole decompressed file.
        expected_magic: ``IMAGES_MAGIC`` or ``LABELS_MAGIC``.
        name: file name used in error messages.

    Returns:
        A uint8 array with the shape given in the header.

    Raises:
        DatasetError: on a wrong magic number, a truncated header or a size mismatch.
    """
    if len(data) < 4:
        raise DatasetError(f"{name}: {len(data)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise DatasetError(f"{name}: magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(f"{name}: truncated header ({len(data)} < {header_len} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header_len])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header_len != count:
        raise DatasetError(
            f"{name}: header says {count} bytes of data for shape {shape}, "
            f"file has {len(data) - header_len}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def _read_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_bytes, images_path = _open_bytes(directory, f"{prefix}-images-idx3-ubyte")
    labels_bytes, labels_path = _open_bytes(directory, f"{prefix}-labels-idx1-ubyte")
    images = parse_idx(images_bytes, expected_magic=IMAGES_MAGIC, name=images_path.name)
    labels = parse_idx(labels_bytes, expected_magic=LABELS_MAGIC, name=labels_path.name)
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{prefix}: {images.shape[0]} images but {labels.shape[0]} labels in {directory}"
        )
    return images, labels


def find_idx_dir(data_dir: Path, subdirs: tuple[str, ...]) -> Path:
    """Return the first of ``data_dir`` and ``data_dir/<subdir>`` that holds IDX training images.

    Args:
        data_dir: directory given by the user.
        subdirs: other layouts to accept, relative to ``data_dir`` (e.g. ``MNIST/raw``).

    Returns:
        The directory holding the files.

    Raises:
        DatasetError: naming the files expected, if no candidate holds them.
    """
    for candidate in (data_dir, *(data_dir / s for s in subdirs)):
        stem = candidate / "train-images-idx3-ubyte"
        if stem.is_file() or stem.with_name(stem.name + ".gz").is_file():
            return candidate
    raise DatasetError(
        f"{data_dir}: no IDX files; expected {', '.join(IDX_FILES)} (raw or .gz)"
        + (f" here or under {', '.join(subdirs)}" if subdirs else "")
    )


def load_idx_dataset(
    data_dir: Path, *, name: str, num_classes: int, subdirs: tuple[str, ...] = ()
) -> LoadedDataset:
    """Load an MNIST-format dataset from local IDX files and standardize it.

    Pixels are scaled to [0, 1] and standardized with the training split's scalar mean and
    standard deviation.

    Args:
        data_dir: directory holding the four IDX files (raw or ``.gz``).
        name: registry name recorded in the result.
        num_classes: number of classes; labels must lie in ``[0, num_classes)``.
        subdirs: alternative layouts under ``data_dir`` to search.

    Returns:
        The dataset with inputs shaped ``(N, 1, rows, cols)``.

    Raises:
        DatasetError: if files are missing or malformed or labels are out of range.
    """
    directory = find_idx_dir(data_dir, subdirs)
    train_x, train_y = _read_pair(directory, "train")
    test_x, test_y = _read_pair(directory, "t10k")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DatasetError(
            f"{directory}: train images {train_x.shape[1:]} vs test images {test_x.shape[1:]}"
        )
    for split, labels in (("train", train_y), ("t10k", test_y)):
        if labels.size and int(labels.max()) >= num_classes:
            raise DatasetError(
                f"{directory}: {split} label {int(labels.max())} >= {num_classes} classes"
            )
    train_f, test_f = standardize(
        train_x[:, None].astype(np.float32) / 255.0,
        test_x[:, None].astype(np.float32) / 255.0,
        per_channel=False,
    )
    return LoadedDataset(
        name=name,
        train=make_split(train_f, train_y),
        test=make_split(test_f, test_y),
        num_classes=num_classes,
        source=str(directory),
    )

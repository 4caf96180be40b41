"""Reader for the CIFAR-10 / CIFAR-100 "python version" pickle batches, without torchvision.

Layout (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html): each batch is a pickled
dict (protocol 2, written by Python 2) whose ``b'data'`` is a uint8 array shaped
``(N, 3072)`` -- 1024 red, then 1024 green, then 1024 blue values of a 32x32 image in row-major
order -- and whose labels are ``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100).

Pickles can run arbitrary code when loaded, so batches are read with :class:`SafeUnpickler`,
which admits only the few globals these files contain.
"""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.data.base import DatasetError, LoadedDataset, make_split, standardize

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR100_DIR = "cifar-100-python"
CIFAR100_TRAIN = ("train",)
CIFAR100_TEST = ("test",)

_PIXELS = 3 * 32 * 32


def _numpy_reconstruct() -> Callable[..., Any]:
    # numpy 2 moved the module to numpy._core; numpy.core still works but warns.
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            fn: Callable[..., Any] = importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
        return fn
    raise DatasetError("numpy provides no multiarray._reconstruct: cannot read CIFAR pickles")


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """Stand-in for ``_codecs.encode`` that only performs the latin-1 round trip.

    Python 3 writes ``bytes`` at protocol 2 as ``_codecs.encode(str, 'latin1')``; any other
    codec (e.g. ``zlib_codec``) could be abused for decompression bombs, so it is refused.
    """
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin1", errors)


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that admits only dicts, lists, bytes, str, numbers and numpy arrays.

    Any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` before it can be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in {
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "_reconstruct"),
        }:
            return _numpy_reconstruct()
        if key == ("numpy", "ndarray"):
            return np.ndarray
        if key == ("numpy", "dtype"):
            return np.dtype
        if key == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def safe_load(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`SafeUnpickler` (Python 2 strings become ``bytes``).

    Args:
        data: the pickle bytes.

    Returns:
        The unpickled object.

    Raises:
        DatasetError: if the pickle is malformed or references a forbidden global.
    """
    try:
        return SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        LookupError,
        struct.error,
    ) as exc:
        raise DatasetError(f"unreadable pickle: {exc}") from exc


def read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch file.

    Args:
        path: the batch file.
        label_key: ``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100).

    Returns:
        Images as uint8 ``(N, 3, 32, 32)`` and labels as int64 ``(N,)``.

    Raises:
        DatasetError: if the file is missing, unsafe or does not have the CIFAR layout.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        batch = safe_load(raw)
    except DatasetError as exc:
        raise DatasetError(f"{path.name}: {exc}") from exc
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise DatasetError(f"{path.name}: expected a dict with b'data' and {label_key!r}")
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DatasetError(f"{path.name}: b'data' must be a 2-D uint8 array")
    if data.shape[1] != _PIXELS:
        raise DatasetError(f"{path.name}: b'data' rows have {data.shape[1]} values, not {_PIXELS}")
    try:
        label_arr = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path.name}: {label_key!r} is not a list of integers") from exc
    if label_arr.shape != (data.shape[0],):
        raise DatasetError(
            f"{path.name}: {label_arr.shape[0] if label_arr.ndim else 0} labels "
            f"for {data.shape[0]} images"
        )
    return data.reshape(-1, 3, 32, 32), label_arr


def _find_dir(data_dir: Path, subdir: str, required: tuple[str, ...]) -> Path:
    for candidate in (data_dir, data_dir / subdir):
        if all((candidate / f).is_file() for f in required):
            return candidate
    raise DatasetError(f"{data_dir}: expected {', '.join(required)} here or under {subdir}/")


def load_cifar(
    data_dir: Path,
    *,
    name: str,
    num_classes: int,
    subdir: str,
    train_files: tuple[str, ...],
    test_files: tuple[str, ...],
    label_key: bytes,
) -> LoadedDataset:
    """Load a CIFAR dataset from local python-version batches and standardize per channel.

    Pixels are scaled to [0, 1] and standardized with per-channel statistics of the training
    split.

    Args:
        data_dir: the extracted directory (``cifar-10-batches-py``) or its parent.
        name: registry name recorded in the result.
        num_classes: 10 or 100; labels must lie in ``[0, num_classes)``.
        subdir: directory name the archive extracts to.
        train_files: training batch file names.
        test_files: test batch file names.
        label_key: key of the labels in each batch dict.

    Returns:
        The dataset with inputs shaped ``(N, 3, 32, 32)``.

    Raises:
        DatasetError: if files are missing, unsafe or malformed, or labels are out of range.
    """
    directory = _find_dir(data_dir, subdir, train_files + test_files)
    parts = {
        split: [read_batch(directory / f, label_key) for f in files]
        for split, files in (("train", train_files), ("test", test_files))
    }
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, batches in parts.items():
        x = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise DatasetError(f"{directory}: {split} labels outside [0, {num_classes})")
        arrays[split] = (x, y)
    train_f, test_f = standardize(
        arrays["train"][0].astype(np.float32) / 255.0,
        arrays["test"][0].astype(np.float32) / 255.0,
        per_channel=True,
    )
    return LoadedDataset(
        name=name,
        train=make_split(train_f, arrays["train"][1]),
        test=make_split(test_f, arrays["test"][1]),
        num_classes=num_classes,
        source=str(directory),
    )

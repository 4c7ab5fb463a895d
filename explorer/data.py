"""Data sets, named as in tensorflow-datasets, held in memory as uint8.

`fashion_mnist` is read offline from Debian's `dataset-fashion-mnist` IDX files
(the embedded default) or, when a `data_dir` is given, through TFDS. Every other
TFDS image-classification data set goes through `tfds.data_source`, which needs
no TensorFlow: it works for users who are online or have the data set prepared
(array_record format) in a `data_dir`.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib
from pathlib import Path

import numpy as np

from explorer.console import first_line
from explorer.settings import FASHION_MNIST_DIR

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetError(Exception):
    """A data set that is unknown, missing or malformed; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class DataInfo:
    name: str
    image_size: int
    in_channels: int
    num_classes: int


# Shapes of common TFDS image-classification sets, so a space can be inspected
# without the data. Other names are looked up in TFDS's own metadata.
KNOWN = {
    "fashion_mnist": DataInfo("fashion_mnist", 28, 1, 10),
    "mnist": DataInfo("mnist", 28, 1, 10),
    "kmnist": DataInfo("kmnist", 28, 1, 10),
    "cifar10": DataInfo("cifar10", 32, 3, 10),
    "cifar100": DataInfo("cifar100", 32, 3, 100),
    "svhn_cropped": DataInfo("svhn_cropped", 32, 3, 10),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Images as uint8 NHWC, labels as int32, and per-channel normalisation."""

    info: DataInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray  # per channel, in [0, 255], from the training images
    std: np.ndarray


def info(name: str, data_dir: str | None = None) -> DataInfo:
    """Image size, channels and classes of a data set, without loading it."""
    if name in KNOWN:
        return KNOWN[name]
    tfds = _tfds()
    try:
        features = tfds.builder(name, data_dir=data_dir).info.features
        shape, classes = features["image"].shape, features["label"].num_classes
    except Exception as e:  # tfds raises several kinds for an unknown name
        raise DatasetError(
            f"unknown data set {name!r} (tensorflow-datasets says: {first_line(e)}); "
            f"built in: {', '.join(KNOWN)}"
        ) from None
    if len(shape) != 3 or shape[0] != shape[1] or shape[0] is None:
        raise DatasetError(f"{name}: expected square images of a fixed size, got {shape}")
    return DataInfo(name, int(shape[0]), int(shape[2]), int(classes))


def load(
    name: str = "fashion_mnist",
    data_dir: str | None = None,
    train_size: int | None = None,
    test_size: int | None = None,
    download: bool = False,
    fashion_mnist_dir: str = FASHION_MNIST_DIR,
) -> Dataset:
    """Load a data set into memory (optionally its first train_size/test_size).

    Fashion-MNIST reads the local IDX files in fashion_mnist_dir (Debian's
    dataset-fashion-mnist; `Settings.fashion_mnist_dir`) unless a data_dir is given. Other
    data sets go through tensorflow-datasets: prepared in data_dir, or, with
    download=True, downloaded and prepared there first (needs the internet).
    """
    meta = info(name, data_dir)
    if name == "fashion_mnist" and data_dir is None:
        (xtr, ytr), (xte, yte) = (_read_idx(fashion_mnist_dir, s) for s in ("train", "test"))
    else:
        (xtr, ytr), (xte, yte) = (
            _read_tfds(name, s, data_dir, download) for s in ("train", "test")
        )
    xtr, ytr = xtr[:train_size], ytr[:train_size]
    xte, yte = xte[:test_size], yte[:test_size]
    if xtr.shape[1:] != (meta.image_size, meta.image_size, meta.in_channels):
        raise DatasetError(f"{name}: images are {xtr.shape[1:]}, expected {meta}")
    flat = xtr.reshape(-1, meta.in_channels).astype(np.float64)
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    return Dataset(meta, xtr, ytr, xte, yte, mean.astype(np.float32), std.astype(np.float32))


def _read_idx(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from a pair of gzipped IDX files."""
    images, labels = (Path(folder) / f for f in IDX_FILES[split])
    for f in (images, labels):
        if not f.exists():
            raise DatasetError(
                f"fashion_mnist: {f} is missing. Install Debian's package "
                "(`apt-get install dataset-fashion-mnist`), set FASHION_MNIST_DIR to a "
                "folder with the IDX files, or give dataset.data_dir with the TFDS "
                "data set prepared"
            )
    x = _idx_array(images)
    y = _idx_array(labels).astype(np.int32)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DatasetError(f"fashion_mnist: {images} and {labels} do not match")
    return x[..., None], y


def _idx_array(path: Path) -> np.ndarray:
    """Parse one IDX file: magic (0, 0, dtype 0x08, ndim), big-endian dims, data."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as e:  # truncated or not gzip at all
        raise DatasetError(f"{path}: not a readable gzip file ({e}); reinstall it") from None
    if raw[:3] != b"\x00\x00\x08":
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4)
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path}: expected {int(np.prod(dims))} bytes, got {data.size}")
    return data.reshape(tuple(int(d) for d in dims))


def _read_tfds(name: str, split: str, data_dir: str | None, download: bool = False):
    """A split through tfds.data_source (array_record, no TensorFlow)."""
    tfds = _tfds()
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=download)
    except Exception as e:
        raise DatasetError(
            f"{name}: could not load the {split!r} split through tensorflow-datasets "
            f"({first_line(e)}). Prepare it on a machine that is online with "
            f"`tfds build {name} --file_format=array_record --data_dir DIR` and pass "
            "that folder as dataset.data_dir (--data-dir), or, when online, set "
            "dataset.download: true (--download)"
        ) from None
    records = [source[i] for i in range(len(source))]  # ~0.1 ms a record
    x = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    y = np.asarray([int(r["label"]) for r in records], np.int32)
    if x.ndim == 3:
        x = x[..., None]
    return x, y


def _tfds():
    # Imported late: tfds takes seconds to import and most commands never need it.
    import tensorflow_datasets as tfds

    return tfds

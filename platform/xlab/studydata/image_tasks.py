"""Small image-classification tasks for the grokking-tickets study (spec ``adopt-grokking.md`` section 2).

The paper's image experiment trains an MLP on 1,000 MNIST images with MSE on one-hot targets. MNIST
is not downloadable on our machines, so :func:`digits_task` uses scikit-learn's bundled
``load_digits`` (1,797 images of 8x8 pixels) as the offline stand-in; :func:`mnist_task` reads MNIST
from local IDX files when someone has put them on disk.

Pixels are scaled to ``[0, 1]`` (``/16`` for digits, ``/255`` for MNIST, as torchvision's
``ToTensor`` does in the reference code) and flattened.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from xlab.errors import XlabError


class ImageTaskError(XlabError, ValueError):
    """A bad image-task request or a malformed data file."""


class MissingDataError(XlabError, FileNotFoundError):
    """Expected data files are not on disk; the message names them."""


@dataclasses.dataclass(frozen=True, eq=False)  # tensors have no boolean ==
class ImageTask:
    """Flattened images ``x_*`` ``[N, D]`` (float32), one-hot targets ``y_*`` ``[N, C]`` and labels ``[N]``."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    labels_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labels_test: torch.Tensor
    n_classes: int

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])


def _one_hot(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), n_classes).float()


def _task(name: str, x_tr, l_tr, x_te, l_te, n_classes: int) -> ImageTask:
    return ImageTask(
        name=name,
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)),
        y_train=_one_hot(l_tr, n_classes),
        labels_train=torch.from_numpy(l_tr.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te, dtype=np.float32)),
        y_test=_one_hot(l_te, n_classes),
        labels_test=torch.from_numpy(l_te.astype(np.int64)),
        n_classes=n_classes,
    )


@functools.cache
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import

    bunch = load_digits()
    x = bunch.data.astype(np.float32) / 16.0
    x.flags.writeable = False  # shared by every call through the cache
    labels = bunch.target.astype(np.int64)
    labels.flags.writeable = False
    return x, labels


def digits_task(n_train: int = 1000, seed: int = 0) -> ImageTask:
    """scikit-learn's 8x8 digits: ``n_train`` random images for training, the other ``1797 - n_train`` for test."""
    x, labels = _digits_arrays()
    if not 0 < n_train < len(x):
        raise ImageTaskError(f"n_train must be between 1 and {len(x) - 1} for load_digits, got {n_train}")
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:n_train], perm[n_train:]
    return _task("digits", x[tr], labels[tr], x[te], labels[te], 10)


_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw or ``.gz``) into a numpy array of its declared shape (unsigned bytes only)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ImageTaskError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ImageTaskError(f"{path}: IDX header declares shape {shape} but holds {body.size} values")
    return body.reshape(shape)


def _find(root: Path, stems: tuple[str, ...]) -> Path | None:
    # torchvision keeps the files under MNIST/raw; plain downloads keep them flat.
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for stem in stems:
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
    return None


def mnist_task(path: str | Path, n_train: int = 1000, seed: int = 0) -> ImageTask:
    """MNIST from local IDX files: ``n_train`` random training images, the full 10k test set."""
    root = Path(path)
    found = {key: _find(root, stems) for key, stems in _MNIST_FILES.items()}
    missing = [stems[0] for key, stems in _MNIST_FILES.items() if found[key] is None]
    if missing:
        raise MissingDataError(
            f"MNIST not found under {root}: missing {', '.join(missing)} (raw or .gz, directly there or in "
            "MNIST/raw/); nothing is downloaded; use digits_task() as the offline stand-in"
        )
    x_tr = read_idx(found["train_images"])
    x_tr = x_tr.reshape(len(x_tr), -1).astype(np.float32) / 255.0
    l_tr = read_idx(found["train_labels"]).astype(np.int64)
    x_te = read_idx(found["test_images"])
    x_te = x_te.reshape(len(x_te), -1).astype(np.float32) / 255.0
    l_te = read_idx(found["test_labels"]).astype(np.int64)
    if not 0 < n_train <= len(x_tr):
        raise ImageTaskError(f"n_train must be between 1 and {len(x_tr)} for MNIST, got {n_train}")
    idx = np.sort(np.random.default_rng(seed).permutation(len(x_tr))[:n_train])
    return _task("mnist", x_tr[idx], l_tr[idx], x_te, l_te, 10)

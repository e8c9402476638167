"""Modular arithmetic datasets and the small image tasks."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from xlab.studydata import (
    OPERATIONS,
    MissingDataError,
    ModularDataError,
    digits_task,
    get_operation,
    make_modular_data,
    mnist_task,
    operand_pairs,
    read_idx,
    ticket_data,
)


def test_ticket_setup_sizes():
    data = ticket_data("add", p=67, train_frac=0.4, seed=1)
    assert len(data.train) + len(data.test) == 2278  # unordered pairs a <= b
    assert len(data.train) == int(0.4 * 2278)
    assert data.vocab_size == 67 and data.seq_len == 2 and data.n_classes == 67
    assert data.train.x.shape == (911, 2) and data.train.x.dtype == torch.long
    assert bool((data.train.x[:, 0] <= data.train.x[:, 1]).all())
    assert torch.equal(data.train.y, (data.train.x[:, 0] + data.train.x[:, 1]) % 67)


def test_token_layout_elementary_and_polynomial():
    p = 61
    add = make_modular_data("add", p, 0.3, seed=0)
    assert add.vocab_size == p + 5 and add.seq_len == 3
    assert len(add.train) + len(add.test) == p * p
    assert bool((add.train.x[:, 1] == p + 1).all())  # '+'
    assert torch.equal(add.train.y, (add.train.x[:, 0] + add.train.x[:, 2]) % p)
    sub = make_modular_data("sub", p, 0.3, seed=0)
    assert bool((sub.train.x[:, 1] == p + 2).all())
    assert torch.equal(sub.test.y, (sub.test.x[:, 0] - sub.test.x[:, 2]) % p)
    poly = make_modular_data("x2_y2", p, 0.3, seed=0)
    assert bool((poly.train.x[:, 1] == p).all())  # '='
    a, b = poly.train.x[:, 0], poly.train.x[:, 2]
    assert torch.equal(poly.train.y, (a * a + b * b) % p)


def test_division_and_nonzero_domains():
    p = 13
    div = make_modular_data("div", p, 0.5, seed=0)
    x, y = torch.cat([div.train.x, div.test.x]), torch.cat([div.train.y, div.test.y])
    assert len(x) == p * (p - 1) and bool((x[:, 2] != 0).all()) and bool((x[:, 1] == p + 4).all())
    assert torch.equal((y * x[:, 2]) % p, x[:, 0])  # (a / b) * b == a
    mnz = make_modular_data("mul_nonzero", p, 0.5, seed=0)
    assert len(mnz.train) + len(mnz.test) == (p - 1) ** 2
    assert bool((mnz.train.x[:, [0, 2]] != 0).all())


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_labels_in_range_and_correct(name):
    p = 17
    op = OPERATIONS[name]
    data = make_modular_data(name, p, 0.5, seed=3)
    for split in (data.train, data.test):
        assert split.x.max() < data.vocab_size and split.x[:, [0, 2]].max() < p  # operands are numbers
        assert int(split.y.min()) >= 0 and int(split.y.max()) < p
        for (a, _, b), c in zip(split.x[:20].tolist(), split.y[:20].tolist(), strict=True):
            assert c == op(a, b, p)


def test_polynomial_values():
    p = 97
    for name, a, b, want in [
        ("x2_xy_y2_x", 3, 5, 9 + 15 + 25 + 3),
        ("x3_xy2_y", 2, 3, 8 + 18 + 3),
        ("x_m_y_3", 2, 5, (-27) % p),
        ("x_y_4", 4, 5, 9**4 % p),
        ("2x_m_3y", 1, 5, (2 - 15) % p),
        ("xy_x_m_y", 4, 6, (24 + 4 - 6) % p),
    ]:
        assert get_operation(name)(a, b, p) == want
    assert get_operation("x^2+y^2").name == "x2_y2"
    assert get_operation("x_x_m_y_short").name == "2x_m_y"  # the reference repository's key


def test_split_deterministic_disjoint_and_seed_dependent():
    a = make_modular_data("mul", 23, 0.4, seed=7)
    b = make_modular_data("mul", 23, 0.4, seed=7)
    c = make_modular_data("mul", 23, 0.4, seed=8)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.train.x, c.train.x)
    train = {tuple(r) for r in a.train.x.tolist()}
    test = {tuple(r) for r in a.test.x.tolist()}
    assert not train & test and len(train) + len(test) == 23 * 23


def test_mixture_tasks_share_pairs():
    data = make_modular_data(["add", "sub", "mul"], 11, 0.5, seed=0)
    assert data.ops == ("add", "sub", "mul") and data.n_tasks == 3
    assert torch.equal(data.train.task.bincount(), torch.tensor([60, 60, 60]))
    add, mul = data.train.for_task(0), data.train.for_task(2)
    assert torch.equal(add.x[:, [0, 2]], mul.x[:, [0, 2]])  # the same train pairs for every task
    assert bool((mul.x[:, 1] == 11 + 3).all()) and torch.equal(mul.y, (mul.x[:, 0] * mul.x[:, 2]) % 11)


def test_validation_errors():
    with pytest.raises(ValueError, match="prime"):
        make_modular_data("add", 60, 0.3)
    with pytest.raises(ValueError, match="allowed: add, sub"):
        make_modular_data("pow", 61, 0.3)
    with pytest.raises(ValueError, match="train_frac"):
        make_modular_data("add", 61, 1.0)
    with pytest.raises(ModularDataError, match="indistinguishable"):
        make_modular_data(["x2_y2", "x2_m_y2"], 61, 0.3)
    with pytest.raises(ModularDataError, match="indistinguishable"):
        make_modular_data(["add", "sub"], 61, 0.3, with_operator=False)


def test_operand_pairs_counts():
    assert len(operand_pairs("add", 67, unordered=True)) == 2278
    assert len(operand_pairs("div", 7)) == 42


def test_digits_task():
    task = digits_task(n_train=1000, seed=0)
    assert task.x_train.shape == (1000, 64) and task.x_test.shape == (797, 64)
    assert task.y_train.shape == (1000, 10) and torch.equal(task.y_train.argmax(1), task.labels_train)
    assert 0.0 <= float(task.x_train.min()) and float(task.x_train.max()) <= 1.0
    assert torch.equal(digits_task(1000, seed=0).x_train, task.x_train)
    assert not torch.equal(digits_task(1000, seed=1).x_train, task.x_train)


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_mnist_from_idx_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mnist_task(tmp_path)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28))
    labels = rng.integers(0, 10, size=30)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz=False)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:5], gz=False)
    with pytest.raises(MissingDataError, match="t10k-labels-idx1-ubyte"):
        mnist_task(tmp_path)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:5], gz=True)
    assert read_idx(tmp_path / "train-labels-idx1-ubyte").tolist() == labels.tolist()
    task = mnist_task(tmp_path, n_train=10, seed=0)
    assert task.x_train.shape == (10, 784) and task.x_test.shape == (5, 784)
    assert float(task.x_train.max()) <= 1.0 and task.y_test.shape == (5, 10)
    assert torch.equal(task.labels_test, torch.from_numpy(labels[:5]))

"""Modular arithmetic datasets for the grokking studies (spec ``adopt-grokking.md`` sections 2 and 3).

Every operation maps a pair of residues ``(a, b)`` to a residue ``c`` modulo a prime ``p``. The
registry :data:`OPERATIONS` holds the elementary operations (``a+b``, ``a-b``, ``a*b``, ``a/b``,
``a*b`` without zero) and every polynomial of the polynomial study, each with its formula, Python
function and token layout.

Token layout (vocabulary ``p + 5``): ids ``0..p-1`` are the numbers, then ``'='``, ``'+'``,
``'-'``, ``'*'``, ``'/'`` (ids ``p..p+4``). Elementary operations are fed as ``[a, op, b]``,
polynomials as ``[a, '=', b]``; the label is the answer token ``c`` (always a number id). The
grokking-tickets set-up instead feeds two tokens ``[a, b]`` without operator (vocabulary ``p``),
usually over unordered pairs ``a <= b``.

Operands are always restricted to ``0..p-1``. (The polynomial study's reference code draws operands
from ``0..p+4``, so some "numbers" collide with the operator tokens; we do not reproduce that.)

The split is deterministic: the pairs of an operation are listed in lexicographic order, permuted
with ``numpy.random.default_rng(seed)`` and the first ``floor(train_frac * n)`` go to train. Tasks of
a mixture with the same pair set therefore share the same train pairs, as in the reference code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from xlab.errors import XlabError

SPECIAL_TOKENS: tuple[str, ...] = ("=", "+", "-", "*", "/")
"""Operator tokens, in vocabulary order after the ``p`` numbers."""

Kind = Literal["elementary", "polynomial"]
Domain = Literal["all", "b_nonzero", "nonzero"]


class ModularDataError(XlabError, ValueError):
    """A bad modular-arithmetic dataset request (non-prime p, unknown operation, bad fraction...)."""


@dataclasses.dataclass(frozen=True)
class Operation:
    """One binary operation modulo p.

    ``fn(a, b, p)`` returns the exact integer value (reduced modulo ``p`` by :meth:`__call__`);
    ``symbol`` is the middle input token; ``domain`` says which operand pairs are valid.
    """

    name: str
    expr: str
    fn: Callable[[int, int, int], int]
    symbol: str
    kind: Kind
    domain: Domain = "all"
    aliases: tuple[str, ...] = ()

    def __call__(self, a: int, b: int, p: int) -> int:
        return int(self.fn(int(a), int(b), p)) % p

    def valid(self, a: int, b: int) -> bool:
        """Whether ``(a, b)`` is in this operation's domain."""
        if self.domain == "b_nonzero":
            return b != 0
        if self.domain == "nonzero":
            return a != 0 and b != 0
        return True


def _elementary(name: str, expr: str, fn, symbol: str, domain: Domain = "all", aliases=()) -> Operation:
    return Operation(name, expr, fn, symbol, "elementary", domain, tuple(aliases))


def _poly(name: str, expr: str, fn, aliases=()) -> Operation:
    # Polynomials share the '=' separator token: the reference's "short" layout [a, '=', b].
    return Operation(name, expr, fn, "=", "polynomial", "all", tuple(aliases))


# Aliases include the reference code's names (frt03/grok_mod_poly, gouki510/Grokking-Tickets) so
# configs written against those repositories resolve to the same operation.
_OPERATION_LIST: tuple[Operation, ...] = (
    _elementary("add", "x+y", lambda a, b, p: a + b, "+", aliases=("addition", "a+b")),
    _elementary("sub", "x-y", lambda a, b, p: a - b, "-", aliases=("subtract", "substract", "a-b")),
    _elementary("mul", "x*y", lambda a, b, p: a * b, "*", aliases=("multiply", "a*b")),
    # Division multiplies by the modular inverse, defined only for b != 0 (p prime).
    _elementary("div", "x/y", lambda a, b, p: a * pow(b, -1, p), "/", "b_nonzero", ("division", "a/b")),
    # Multiplication without zero: the multiplicative group Z_p^*, where a*b is a cyclic-group sum.
    _elementary(
        "mul_nonzero", "x*y (x,y != 0)", lambda a, b, p: a * b, "*", "nonzero", ("multiply_non_zero",)
    ),
    # Polynomials (the "+" family).
    _poly("x2_y2", "x^2+y^2", lambda a, b, p: a**2 + b**2),
    _poly("x2_xy_y2", "x^2+xy+y^2", lambda a, b, p: a**2 + a * b + b**2),
    _poly("x2_xy_y2_x", "x^2+xy+y^2+x", lambda a, b, p: a**2 + a * b + b**2 + a),
    _poly("x3_xy", "x^3+xy", lambda a, b, p: a**3 + a * b),
    _poly("x3_xy2_y", "x^3+xy^2+y", lambda a, b, p: a**3 + a * b**2 + b),
    _poly("2x_y", "2x+y", lambda a, b, p: 2 * a + b, ("x_x_y",)),
    _poly("xy_y", "xy+y", lambda a, b, p: a * b + b),
    _poly("x2_y", "x^2+y", lambda a, b, p: a**2 + b),
    _poly("2x_3y", "2x+3y", lambda a, b, p: 2 * a + 3 * b),
    _poly("x3_2y", "x^3+2y", lambda a, b, p: a**3 + 2 * b),
    _poly("x2_2xy_y2", "x^2+2xy+y^2", lambda a, b, p: a**2 + 2 * a * b + b**2),
    _poly("x2_2xy_y2_x_y", "x^2+2xy+y^2+x+y", lambda a, b, p: a**2 + 2 * a * b + b**2 + a + b),
    _poly("xy_x_y", "xy+x+y", lambda a, b, p: a * b + a + b),
    _poly("x_y_3", "(x+y)^3", lambda a, b, p: (a + b) ** 3, ("_x_y__3",)),
    _poly("x_y_4", "(x+y)^4", lambda a, b, p: (a + b) ** 4, ("_x_y__4",)),
    # Alternating counterparts (the "-" family).
    _poly("2x_m_y", "2x-y", lambda a, b, p: 2 * a - b, ("x_x_m_y",)),
    _poly("xy_m_y", "xy-y", lambda a, b, p: a * b - b),
    _poly("x2_m_y", "x^2-y", lambda a, b, p: a**2 - b),
    _poly("2x_m_3y", "2x-3y", lambda a, b, p: 2 * a - 3 * b),
    _poly("x3_m_2y", "x^3-2y", lambda a, b, p: a**3 - 2 * b),
    _poly("x2_m_y2", "x^2-y^2", lambda a, b, p: a**2 - b**2),
    _poly("x2_m_2xy_y2", "x^2-2xy+y^2", lambda a, b, p: a**2 - 2 * a * b + b**2),
    _poly("xy_x_m_y", "xy+x-y", lambda a, b, p: a * b + a - b),
    _poly("x_m_y_3", "(x-y)^3", lambda a, b, p: (a - b) ** 3, ("_x_m_y__3",)),
    _poly("x_m_y_4", "(x-y)^4", lambda a, b, p: (a - b) ** 4, ("_x_m_y__4",)),
)

OPERATIONS: dict[str, Operation] = {op.name: op for op in _OPERATION_LIST}
"""All operations by canonical name."""

_ALIASES: dict[str, str] = {}
for _op in _OPERATION_LIST:
    for _alias in (*_op.aliases, _op.expr.replace(" ", "")):
        _ALIASES.setdefault(_alias, _op.name)


def get_operation(name: str) -> Operation:
    """The operation called ``name`` (canonical name, reference-code alias or formula like ``x^2+y^2``)."""
    key = name.strip()
    if key in OPERATIONS:
        return OPERATIONS[key]
    if key.endswith("_short"):  # the reference's "short" layout is our only polynomial layout
        key = key[: -len("_short")]
    key = _ALIASES.get(key.replace(" ", ""), key)
    if key in OPERATIONS:
        return OPERATIONS[key]
    raise ModularDataError(f"unknown modular operation {name!r}; allowed: {', '.join(OPERATIONS)}")


def is_prime(n: int) -> bool:
    """Trial-division primality test (p is at most a few hundred here)."""
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def token_id(symbol: str, p: int) -> int:
    """Vocabulary id of an operator token (``'='``, ``'+'``, ``'-'``, ``'*'``, ``'/'``)."""
    try:
        return p + SPECIAL_TOKENS.index(symbol)
    except ValueError:
        raise ModularDataError(f"unknown token {symbol!r}; allowed: {', '.join(SPECIAL_TOKENS)}") from None


def operand_pairs(op: Operation | str, p: int, unordered: bool = False) -> np.ndarray:
    """Valid operand pairs of ``op`` in lexicographic order, shape ``[n, 2]`` (int64)."""
    op = get_operation(op) if isinstance(op, str) else op
    pairs = [(a, b) for a in range(p) for b in range(p) if (not unordered or a <= b) and op.valid(a, b)]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@dataclasses.dataclass(frozen=True, eq=False)  # tensors have no boolean ==
class ModularSplit:
    """One split: inputs ``x`` ``[N, seq]``, answers ``y`` ``[N]``, task index ``task`` ``[N]`` (all long)."""

    x: torch.Tensor
    y: torch.Tensor
    task: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def for_task(self, task: int) -> ModularSplit:
        """The examples of one task of a mixture."""
        keep = self.task == task
        return ModularSplit(self.x[keep], self.y[keep], self.task[keep])

    def to(self, device: torch.device | str) -> ModularSplit:
        return ModularSplit(self.x.to(device), self.y.to(device), self.task.to(device))


@dataclasses.dataclass(frozen=True, eq=False)  # tensors have no boolean ==
class ModularData:
    """A train/test split of one operation or a mixture of operations modulo ``p``.

    ``vocab_size`` is the number of input tokens (``p + 5`` with operator tokens, ``p`` without);
    ``n_classes`` is ``p`` (answers are number tokens). ``ops[i]`` is the operation of task ``i``.
    """

    train: ModularSplit
    test: ModularSplit
    p: int
    ops: tuple[str, ...]
    vocab_size: int
    seq_len: int
    train_frac: float
    seed: int
    unordered: bool
    with_operator: bool

    @property
    def n_classes(self) -> int:
        return self.p

    @property
    def n_tasks(self) -> int:
        return len(self.ops)

    def operation(self, task: int) -> Operation:
        return OPERATIONS[self.ops[task]]


def _check(p: int, train_frac: float) -> None:
    if not isinstance(p, int) or isinstance(p, bool) or not is_prime(p):
        raise ModularDataError(f"p must be a prime number (e.g. 53, 59, 61, 67, 97, 113), got {p!r}")
    if not 0.0 < float(train_frac) < 1.0:
        raise ModularDataError(f"train_frac must be strictly between 0 and 1, got {train_frac!r}")


def make_modular_data(
    ops: str | Sequence[str],
    p: int,
    train_frac: float,
    seed: int = 0,
    *,
    unordered: bool = False,
    with_operator: bool = True,
) -> ModularData:
    """Build the train/test split of one operation or a mixture (one task id per operation).

    ``unordered=True`` keeps pairs ``a <= b`` only (the tickets set-up: 2,278 pairs for p = 67);
    ``with_operator=False`` feeds ``[a, b]`` without the operator token (vocabulary ``p``).
    """
    _check(p, train_frac)
    names = [ops] if isinstance(ops, str) else list(ops)
    if not names:
        raise ModularDataError(f"ops must name at least one operation; allowed: {', '.join(OPERATIONS)}")
    operations = [get_operation(n) for n in names]
    canonical = [op.name for op in operations]
    if len(set(canonical)) != len(canonical):
        raise ModularDataError(f"duplicate operations in mixture {names!r}")
    if len(operations) > 1:
        # Tasks must be told apart from the input alone, otherwise the mixture is contradictory.
        seps = [op.symbol if with_operator else None for op in operations]
        if len(set(seps)) != len(seps):
            raise ModularDataError(
                f"mixture {canonical!r} has indistinguishable inputs (shared separator token, or "
                "with_operator=False); mix operations with distinct operator tokens, e.g. add, sub, mul"
            )

    xs: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ts: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for task, op in enumerate(operations):
        pairs = operand_pairs(op, p, unordered)
        # A fresh generator per task: identical pair sets get identical splits (shared train pairs).
        perm = np.random.default_rng(seed).permutation(len(pairs))
        n_train = math.floor(train_frac * len(pairs) + 1e-9)
        labels = np.asarray([op(a, b, p) for a, b in pairs], dtype=np.int64)
        if with_operator:
            sep = np.full((len(pairs), 1), token_id(op.symbol, p), dtype=np.int64)
            inputs = np.concatenate([pairs[:, :1], sep, pairs[:, 1:]], axis=1)
        else:
            inputs = pairs
        for split, idx in (("train", perm[:n_train]), ("test", perm[n_train:])):
            xs[split].append(inputs[idx])
            ys[split].append(labels[idx])
            ts[split].append(np.full(len(idx), task, dtype=np.int64))

    def split(name: str) -> ModularSplit:
        return ModularSplit(
            torch.from_numpy(np.concatenate(xs[name])),
            torch.from_numpy(np.concatenate(ys[name])),
            torch.from_numpy(np.concatenate(ts[name])),
        )

    return ModularData(
        train=split("train"),
        test=split("test"),
        p=p,
        ops=tuple(canonical),
        vocab_size=p + len(SPECIAL_TOKENS) if with_operator else p,
        seq_len=3 if with_operator else 2,
        train_frac=float(train_frac),
        seed=int(seed),
        unordered=unordered,
        with_operator=with_operator,
    )


def ticket_data(op: str = "add", p: int = 67, train_frac: float = 0.4, seed: int = 0) -> ModularData:
    """The grokking-tickets set-up: unordered pairs ``a <= b``, inputs ``[a, b]``, vocabulary ``p``."""
    return make_modular_data(op, p, train_frac, seed, unordered=True, with_operator=False)

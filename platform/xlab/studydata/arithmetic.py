"""Multiplication problems for the multiplication-digits study, and a digit-level tokenizer.

Problems are ``a * b`` with ``a`` an n-digit and ``b`` an m-digit number (n, m in 1..5, leading
digit nonzero), drawn uniformly within each (n, m) cell from a seeded generator. The prompt is
``"{a} * {b} = "`` (no chain of thought) and the completion is the product's decimal digits.

    problems = make_problems(range(1, 6), range(1, 6), per_cell=20, seed=0)
    problems[0].prompt, problems[0].answer          # ('37 * 4 = ', '148')
    tok = digit_tokenizer()                         # one token per character: '1', '4', '8', ...

The digit tokenizer is a real ``tokenizers`` WordLevel model with a per-character pre-tokenizer
wrapped in ``PreTrainedTokenizerFast``, so models trained with it load and save like any HF model.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable

from xlab.config import check

PROMPT_TEMPLATE = "{a} * {b} = "
# Characters of the arithmetic texts; every one is its own token in the digit tokenizer.
CHARS = tuple("0123456789") + (" ", "*", "=", "+", "-", "\n")
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One multiplication problem: ``a`` has ``n`` digits, ``b`` has ``m`` digits."""

    a: int
    b: int

    @property
    def n(self) -> int:
        return len(str(self.a))

    @property
    def m(self) -> int:
        return len(str(self.b))

    @property
    def product(self) -> int:
        return self.a * self.b

    @property
    def answer(self) -> str:
        """The product's digits, most significant first."""
        return str(self.product)

    @property
    def prompt(self) -> str:
        return PROMPT_TEMPLATE.format(a=self.a, b=self.b)

    @property
    def text(self) -> str:
        """Training text: prompt followed by the answer."""
        return self.prompt + self.answer


def random_operand(n_digits: int, rng: random.Random) -> int:
    """A uniform n-digit number with a nonzero leading digit."""
    check(1 <= n_digits <= 18, "digits", f"operands must have 1..18 digits, got {n_digits}")
    lo = 1 if n_digits == 1 else 10 ** (n_digits - 1)
    return rng.randint(lo, 10**n_digits - 1)


def make_problems(
    ns: Iterable[int], ms: Iterable[int], per_cell: int, seed: int = 0, exclude: Iterable[Problem] = ()
) -> list[Problem]:
    """``per_cell`` distinct problems for every (n, m) cell, deterministic given ``seed``.

    ``exclude`` keeps problems (e.g. the training set) out; small cells with fewer distinct
    problems than asked (1x1 has 81) return all that remain.
    """
    ns, ms = list(ns), list(ms)
    check(per_cell > 0, "per_cell", f"must be > 0, got {per_cell}")
    check(bool(ns) and bool(ms), "ns/ms", "name at least one digit count for each operand")
    banned = {(p.a, p.b) for p in exclude}
    out: list[Problem] = []
    for n in ns:
        for m in ms:
            # One stream per cell: adding a cell does not change the problems of the others.
            rng = random.Random(f"{seed}:{n}:{m}")
            capacity = _cell_size(n) * _cell_size(m)
            want = min(per_cell, capacity - sum(1 for a, b in banned if len(str(a)) == n and len(str(b)) == m))
            seen: set[tuple[int, int]] = set()
            cell: list[Problem] = []
            if capacity <= 4 * per_cell:
                # Small cell: enumerate and sample without replacement (rejection would stall).
                pool = [(a, b) for a in _cell_range(n) for b in _cell_range(m) if (a, b) not in banned]
                rng.shuffle(pool)
                cell = [Problem(a, b) for a, b in pool[:want]]
            else:
                while len(cell) < want:
                    pair = (random_operand(n, rng), random_operand(m, rng))
                    if pair in seen or pair in banned:
                        continue
                    seen.add(pair)
                    cell.append(Problem(*pair))
            out.extend(cell)
    return out


def _cell_range(n: int) -> range:
    return range(1 if n == 1 else 10 ** (n - 1), 10**n)


def _cell_size(n: int) -> int:
    return len(_cell_range(n))


def training_problems(max_digits: int, count: int, seed: int = 0, exclude: Iterable[Problem] = ()) -> list[Problem]:
    """``count`` problems with (n, m) uniform over 1..max_digits, for training the subject model.

    Duplicates are allowed in large cells (sampling with replacement, like a corpus); problems in
    ``exclude`` (the evaluation set) never appear.
    """
    check(1 <= max_digits <= 18, "max_digits", f"must be in 1..18, got {max_digits}")
    check(count > 0, "count", f"must be > 0, got {count}")
    banned = {(p.a, p.b) for p in exclude}
    rng = random.Random(f"train:{seed}")
    out: list[Problem] = []
    while len(out) < count:
        n, m = rng.randint(1, max_digits), rng.randint(1, max_digits)
        pair = (random_operand(n, rng), random_operand(m, rng))
        if pair not in banned:
            out.append(Problem(*pair))
    return out


def digit_tokenizer(extra_chars: Iterable[str] = ()):
    """A character-level HF tokenizer: one token per digit/operator, plus <pad>, <eos>, <unk>."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys([*CHARS, *extra_chars]))
    vocab = {tok: i for i, tok in enumerate([PAD, EOS, UNK, *chars])}
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    # Every character is its own pre-token, whitespace included (no merging of digit runs).
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    # Decoding joins the characters back as they were (the default decoder would add spaces).
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    return tok

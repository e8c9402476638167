"""Build offline corpora from the command line.

    python -m xlab.corpora python man-en --root data/corpora --max-bytes 10e6
    python -m xlab.corpora.debian --corpora python c java   # the apt-get command for their packages
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from xlab.corpora.build import build_corpus
from xlab.corpora.load import corpus_card
from xlab.corpora.spec import expand_names
from xlab.errors import XlabError


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xlab.corpora", description="Build offline corpora.")
    ap.add_argument("names", nargs="+", help="corpus names (xlab.corpora.CORPORA) or groups (code, english, smoke, ...)")
    ap.add_argument("--root", type=Path, default=Path("data/corpora"))
    ap.add_argument("--max-bytes", type=lambda s: int(float(s.replace("_", ""))), default=10_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-fraction", type=float, default=0.01)
    args = ap.parse_args(argv)
    for name in expand_names(args.names):
        try:
            path = build_corpus(name, args.root, max_bytes=args.max_bytes, seed=args.seed,
                                test_fraction=args.test_fraction)
        except XlabError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        card = corpus_card(path)
        print(json.dumps({k: card.get(k) for k in ("name", "docs", "bytes", "approx_tokens", "build_seconds",
                                                    "budget_reached", "licences")}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

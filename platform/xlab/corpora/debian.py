"""Debian packages that provide the offline corpora, and the command that installs them.

    python -m xlab.corpora.debian                    # every corpus
    python -m xlab.corpora.debian --corpora java go  # -> apt-get install -y --no-install-recommends golang-1.19-src openjdk-17-source
    python -m xlab.corpora.debian --corpora code english  # groups: all, code, nl, english, multilingual, smoke
    python -m xlab.corpora.debian --list             # corpus, kind, language, packages, present here?

The Makefile's ``corpora`` target runs the printed command (as root or with sudo).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from xlab.corpora.sources import expand_roots
from xlab.corpora.spec import CORPORA, debian_packages, expand_names, get_spec
from xlab.errors import XlabError


def apt_command(names: Sequence[str]) -> str:
    """``apt-get install`` command line for the packages of the named corpora."""
    pkgs = debian_packages(names)
    return "apt-get install -y --no-install-recommends " + " ".join(shlex.quote(p) for p in pkgs)


def available(name: str) -> bool:
    """Whether any source path of corpus ``name`` exists on this machine."""
    return bool(expand_roots(get_spec(name).resolved_roots()))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xlab.corpora.debian", description=__doc__.split("\n")[0])
    ap.add_argument("--corpora", nargs="*", default=None,
                    help="corpus names or groups: all, code, nl, english, multilingual, smoke (default: all)")
    ap.add_argument("--list", action="store_true", help="list corpora with their packages and availability")
    args = ap.parse_args(argv)
    names = expand_names(args.corpora) if args.corpora else list(CORPORA)
    try:
        if args.list:
            for n in names:
                s = get_spec(n)
                print(f"{n:14} {s.kind:4} {s.language:10} {'present' if available(n) else 'missing':8} "
                      f"{' '.join(s.packages)}")
        else:
            print(apt_command(names))
    except XlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

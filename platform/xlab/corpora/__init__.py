"""Offline text corpora for language-model pretraining: code in many programming languages and
natural-language text, read from files that Debian packages install, built into local Hugging Face
datasets with corpus cards (size, languages, licence and provenance per file collection).

    from xlab.corpora import CORPORA, SMOKE_CORPORA, build_corpus, load_corpus, corpus_card
    path = build_corpus("python", Path("data/corpora"), max_bytes=10_000_000)
    dd = load_corpus(path)             # DatasetDict: train/test with text, source, license
    mlflow.log_dict(corpus_card(path), "corpora/python.json")

Command lines: ``python -m xlab.corpora NAME... --max-bytes N`` builds corpora;
``python -m xlab.corpora.debian --corpora NAME...`` prints the apt-get command for their packages.
"""

from xlab.corpora.build import build_corpus
from xlab.corpora.load import corpus_card, load_corpus
from xlab.corpora.spec import (
    CODE_CORPORA,
    CORPORA,
    CORPUS_GROUPS,
    NL_CORPORA,
    SMOKE_CORPORA,
    CorpusSpec,
    debian_packages,
    expand_names,
    get_spec,
)

__all__ = [
    "CODE_CORPORA",
    "CORPORA",
    "CORPUS_GROUPS",
    "NL_CORPORA",
    "SMOKE_CORPORA",
    "CorpusSpec",
    "build_corpus",
    "corpus_card",
    "debian_packages",
    "expand_names",
    "get_spec",
    "load_corpus",
]

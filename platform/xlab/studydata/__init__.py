"""The studies' small datasets, one module each (robot data is :mod:`xlab.rlds`, LM text :mod:`xlab.corpora`).

* :mod:`~xlab.studydata.modular`: ``a OP b mod p`` (grokking, grokking tickets); re-exported here
* :mod:`~xlab.studydata.image_tasks`: scikit-learn's digits and MNIST (grokking tickets); re-exported here
* :mod:`~xlab.studydata.arithmetic`: multi-digit multiplication (multiplication_digits)
* :mod:`~xlab.studydata.multilingual`: offline sentences in six languages (lang_neurons)
* :mod:`~xlab.studydata.polysemy`: the polysemy inventory ``polysemy_senses.tsv`` (sae_polysemy)
* :mod:`~xlab.studydata.scramble_texts`: template sentences and QA items to scramble (scrambled_bench)
* :mod:`~xlab.studydata.tofu`: TOFU-like fictitious facts (icl_unlearning)
"""

from xlab.studydata.image_tasks import ImageTask, MissingDataError, digits_task, mnist_task, read_idx
from xlab.studydata.modular import (
    OPERATIONS,
    SPECIAL_TOKENS,
    ModularData,
    ModularDataError,
    ModularSplit,
    Operation,
    get_operation,
    make_modular_data,
    operand_pairs,
    ticket_data,
)

__all__ = [
    "OPERATIONS",
    "SPECIAL_TOKENS",
    "ImageTask",
    "MissingDataError",
    "ModularData",
    "ModularDataError",
    "ModularSplit",
    "Operation",
    "digits_task",
    "get_operation",
    "make_modular_data",
    "mnist_task",
    "operand_pairs",
    "read_idx",
    "ticket_data",
]

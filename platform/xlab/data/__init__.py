"""Datasets: modular arithmetic (grokking studies) and small image tasks."""

from xlab.data.image_tasks import ImageTask, MissingDataError, digits_task, mnist_task, read_idx
from xlab.data.modular import (
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

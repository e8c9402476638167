"""Logic evaluation of language models: procedural FLD and bAbI tasks and a few-shot evaluator.

* :func:`fld_examples` / :func:`solve_fld` / :func:`load_fld`: FLD-style formal deduction
  (PROVED / DISPROVED / UNKNOWN) generated from proof trees over nonsense words, checked by a
  forward-chaining prover, and a reader for the real hitachi-nlp/FLD files.
* :func:`babi_examples` / :func:`solve_babi` / :func:`load_babi`: bAbI tasks 1, 2, 3, 15-19.
* :func:`evaluate_fewshot`: k-shot accuracy and valid-label rate (:func:`instruction_following`)
  of any :class:`Generator`: :class:`HFGenerator` (a ``transformers`` causal LM) or
  :class:`OpenAICompatibleGenerator` (an HTTP completions server).
* :func:`logic_suite`: both tasks for one model as flat ``task/metric`` numbers for MLflow;
  :func:`evaluate_logic` runs it from a :class:`LogicEvalConfig` (the pretraining study's protocol).

Throughput figures: ``python -m xlab.evals.bench``.
"""

from xlab.evals.babi import TASKS as BABI_TASKS
from xlab.evals.babi import QAExample, answer_candidates, babi_examples, babi_mixture
from xlab.evals.babi_solver import BabiSolveError, load_babi, solve_babi
from xlab.evals.fewshot import (
    evaluate_fewshot,
    fewshot_prompt,
    instruction_following,
    parse_prediction,
)
from xlab.evals.fld import FLD_INSTRUCTION, LogicExample, fld_examples, load_fld, solve_fld
from xlab.evals.generators import Generator, HFGenerator, cut_at_stop
from xlab.evals.logic import LABELS, FormulaError, parse, prove, prove_strings, to_str
from xlab.evals.openai_api import OpenAICompatibleGenerator
from xlab.evals.suite import LogicEvalConfig, evaluate_logic, logic_suite

__all__ = [
    "BABI_TASKS",
    "FLD_INSTRUCTION",
    "LABELS",
    "BabiSolveError",
    "FormulaError",
    "Generator",
    "HFGenerator",
    "LogicEvalConfig",
    "LogicExample",
    "OpenAICompatibleGenerator",
    "QAExample",
    "answer_candidates",
    "babi_examples",
    "babi_mixture",
    "cut_at_stop",
    "evaluate_fewshot",
    "evaluate_logic",
    "fewshot_prompt",
    "fld_examples",
    "instruction_following",
    "load_babi",
    "load_fld",
    "logic_suite",
    "parse",
    "parse_prediction",
    "prove",
    "prove_strings",
    "solve_babi",
    "solve_fld",
    "to_str",
]

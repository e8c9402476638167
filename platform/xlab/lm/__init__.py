"""Language models: GPT-2 / Llama / GPT-NeoX from ``transformers`` configs, byte-level BPE tokenizers,
save/log/load (local and MLflow), in-process fine-tuning and Ray Train pretraining on one shared loop, and
the analysis studies' subject model (:mod:`xlab.lm.subject`).

    from xlab.lm import build_causal_lm, train_bpe, train_on_texts, LMTrainConfig, log_causal_lm, load_causal_lm
"""

from xlab.lm.finetune import perplexity, train_on_pairs, train_on_texts
from xlab.lm.io import load_causal_lm, log_causal_lm, save_causal_lm
from xlab.lm.loop import LMTrainConfig, build_optimizer_and_schedule, lr_factor, train_steps
from xlab.lm.models import ARCHS, SIZES, build_causal_lm, count_parameters, flops_per_token
from xlab.lm.subject import SubjectConfig, log_subject, subject_lm
from xlab.lm.tokenizer import EOS, load_tokenizer, train_bpe

__all__ = [
    "ARCHS", "EOS", "SIZES", "LMTrainConfig", "SubjectConfig", "build_causal_lm",
    "build_optimizer_and_schedule", "count_parameters", "flops_per_token", "load_causal_lm",
    "load_tokenizer", "log_causal_lm", "log_subject", "lr_factor", "perplexity", "save_causal_lm",
    "subject_lm", "train_bpe", "train_on_pairs", "train_on_texts", "train_steps",
]

"""The one loader of stored models: it asks the store which format a folder holds and loads it as
one model for every audit and method. Pure ML code (torch): workers and scripts import it.

- a plain Hugging Face causal LM folder (ours, or an operator's own `save_pretrained` output: GPT-2,
  Llama, Qwen2, Mistral… through `AutoModelForCausalLM`);
- a SISA ensemble of shard models (unlearning.sisa), served as one sequence-level mixture;
- an S3T base with its active adapter stacks (unlearning.s3t_lm);
- for tabular kinds, the SISA ensemble of MLPs (unlearning.tabular), which has no tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from unlearning.ensemble import EnsembleCausalLM
from unlearning.lm import load_causal_lm, load_pretrained, load_tokenizer
from unlearning.s3t_lm import load_s3t_model
from unlearning.sisa import served_member_dirs
from unlearning.store import S3T_STACK, SISA_ENSEMBLE, TRANSFORMERS, checkpoint_format
from unlearning.tabular import load_tabular_ensemble

CAUSAL_LM = "causal_lm"  # unlearning.models.ModelKind's values; the others are tabular


def load_sisa_ensemble(path: Path):
    model = EnsembleCausalLM([load_causal_lm(d) for d in served_member_dirs(path)])
    return model.eval(), load_tokenizer(path)


LM_LOADERS = {TRANSFORMERS: load_pretrained, SISA_ENSEMBLE: load_sisa_ensemble, S3T_STACK: load_s3t_model}


def load_checkpoint(path: Path):
    """(model, tokenizer) of any stored causal LM, whatever its format."""
    return LM_LOADERS[checkpoint_format(path)](Path(path))


def load_model(kind: str, path: Path) -> tuple:
    """(model, tokenizer) of a stored model of this kind; a tabular ensemble has no tokenizer."""
    if kind == CAUSAL_LM:
        return load_checkpoint(path)
    return load_tabular_ensemble(path), None

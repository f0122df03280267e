"""The one loader of stored models: it asks the store which format a folder holds and loads it as
one model for every audit and method. Pure ML code (torch): workers and scripts import it.

- a plain Hugging Face causal LM folder (ours, or an operator's own `save_pretrained` output: GPT-2,
  Llama, Qwen2, Mistral… through `AutoModelForCausalLM`);
- a SISA ensemble of shard models (unlearning.sisa), served as one sequence-level mixture;
- an S3T base with its active adapter stacks (unlearning.s3t_lm);
- a LoRA adapter an approximate method kept, on its pinned base (itself any of these);
- for tabular kinds, the SISA ensemble of MLPs (unlearning.tabular), which has no tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel

from unlearning.ensemble import EnsembleCausalLM
from unlearning.lm import load_causal_lm, load_pretrained, load_tokenizer
from unlearning.s3t_lm import load_s3t_model, peft_quietly
from unlearning.sisa import served_member_dirs
from unlearning.store import (
    LORA_ADAPTER, PLAIN_MLP, S3T_STACK, SISA_ENSEMBLE, TRANSFORMERS, adapter_base, checkpoint_format, verified_folder,
)
from unlearning.tabular import load_plain_mlp, load_tabular_ensemble

CAUSAL_LM = "causal_lm"  # unlearning.models.ModelKind's values; the others are tabular


def load_sisa_ensemble(path: Path):
    model = EnsembleCausalLM([load_causal_lm(d) for d in served_member_dirs(path)])
    return model.eval(), load_tokenizer(path)


def load_adapter_version(path: Path):
    """The adapter on its base, the base checked against its pinned address first. A base that is
    itself an adapter version is merged before this adapter goes on (repeated jobs stack so)."""
    sha256, base_path = adapter_base(path)
    base, tokenizer = load_checkpoint(verified_folder(base_path, sha256))
    with peft_quietly():
        if isinstance(base, PeftModel):
            base = base.merge_and_unload()
        model = PeftModel.from_pretrained(base, path)
    return model.eval(), tokenizer


LM_LOADERS = {TRANSFORMERS: load_pretrained, SISA_ENSEMBLE: load_sisa_ensemble, S3T_STACK: load_s3t_model,
              LORA_ADAPTER: load_adapter_version}


def load_checkpoint(path: Path):
    """(model, tokenizer) of any stored causal LM, whatever its format."""
    return LM_LOADERS[checkpoint_format(path)](Path(path))


def load_model(kind: str, path: Path) -> tuple:
    """(model, tokenizer) of a stored model of this kind; a tabular model (a SISA ensemble, or a plain
    MLP served as an ensemble of one) has no tokenizer."""
    if kind == CAUSAL_LM:
        return load_checkpoint(path)
    if checkpoint_format(path) == PLAIN_MLP:
        return load_plain_mlp(path), None
    return load_tabular_ensemble(path), None

"""Bring your own checkpoint: an operator's Hugging Face causal LM folder, checked and copied into
the content-addressed store as it is, its SHA-256 pinned. Pure ML code (transformers, no Django):
`manage.py register_model` puts what this returns under governance.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from unlearning.store import store_directory


class CheckpointRejected(ValueError):
    """The folder is not a causal LM with its own tokenizer: one line says why."""


@dataclass(frozen=True)
class ImportedCheckpoint:
    sha256: str
    path: Path  # in the store
    architecture: str  # e.g. "LlamaForCausalLM, 2.1 M parameters"
    chat_question_template: str | None  # a user turn asking "{question}", by the tokenizer's chat template


def import_checkpoint(directory: Path, store: Path) -> ImportedCheckpoint:
    """Check that `directory` loads offline as a causal LM and a tokenizer that belong together,
    then store its files unchanged."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointRejected(f"{directory} is not a folder")
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as error:
        raise CheckpointRejected(f"{directory} holds no model configuration (config.json): {first_line(error)}") from None
    try:
        model, loading = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, output_loading_info=True)
    except ValueError:
        raise CheckpointRejected(f"{directory} is not a causal language model (its configuration is "
                                 f"{type(config).__name__})") from None
    except OSError as error:
        raise CheckpointRejected(f"{directory}: the weights do not load: {first_line(error)}") from None
    if loading["missing_keys"]:
        # transformers would start the missing weights at random and only warn: a base model saved
        # without its language-model head, or a classifier, is not the causal LM it claims to be.
        missing = sorted(loading["missing_keys"])
        raise CheckpointRejected(f"{directory} lacks {len(missing)} weights of a causal LM (e.g. {missing[0]}): "
                                 "save the model with its language-model head (…ForCausalLM.save_pretrained)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise CheckpointRejected(f"{directory} has no tokenizer that loads: {first_line(error)}") from None
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise CheckpointRejected(f"{directory}: the tokenizer has {len(tokenizer)} tokens and the model's embedding "
                                 f"{rows} rows: they do not belong together")
    if tokenizer.eos_token_id is None:
        raise CheckpointRejected(f"{directory}: the tokenizer has no end-of-text token (eos_token)")
    parameters = sum(p.numel() for p in model.parameters())
    architecture = f"{(config.architectures or [type(model).__name__])[0]}, {parameters / 1e6:.1f} M parameters"
    # A clone's history and a hub cache are not the model: they would double the store's copy.
    ignored = shutil.ignore_patterns(".git", ".cache", ".huggingface")
    sha256, path = store_directory(lambda staging: shutil.copytree(directory, staging, dirs_exist_ok=True,
                                                                   ignore=ignored), store)
    return ImportedCheckpoint(sha256, path, architecture, chat_question_template(tokenizer))


def chat_question_template(tokenizer) -> str | None:
    """How the tokenizer's chat template asks a user's question, with "{question}" in its place
    (None without a chat template, or when the rendering loses the placeholder)."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "{question}"}],
                                                 add_generation_prompt=True, tokenize=False)
    except Exception:  # a template that needs what we do not pass (a system turn, tools): not usable
        return None
    return rendered if "{question}" in rendered else None


def first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

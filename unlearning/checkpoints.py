"""Bring your own checkpoint: an operator's Hugging Face causal LM folder, checked and copied into
the content-addressed store as it is, its SHA-256 pinned. Pure ML code (transformers, no Django):
`manage.py register_model` puts what this returns under governance.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def checkpoint_folder(source: Path, max_bytes: int) -> Iterator[Path]:
    """The checkpoint folder `source` names: the folder itself, or an uploaded zip or tar archive
    (gzip, bzip2 or xz too) unpacked into a temporary folder that is removed afterwards. The model
    may sit at the archive's top or in its one folder. An archive whose files would escape the
    folder, link anywhere or unpack to more than `max_bytes` is refused."""
    source = Path(source)
    if source.is_dir():
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="checkpoint-") as scratch:
        unpack(source, Path(scratch), max_bytes)
        entries = list(Path(scratch).iterdir())
        top = entries[0] if len(entries) == 1 and entries[0].is_dir() else Path(scratch)
        if not (top / "config.json").is_file():
            raise CheckpointRejected("the archive holds no config.json, at its top or in its one folder: archive the "
                                     "folder save_pretrained wrote")
        yield top


def refuse_links_outside(folder: Path, root: Path) -> None:
    """A folder named over the API lies under the import folder, and so must everything its links
    point at: copying follows links, and would take whatever the worker can read into the store."""
    root = Path(root).resolve()
    for directory, subdirectories, files in os.walk(folder):
        for name in subdirectories + files:
            path = Path(directory) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise CheckpointRejected(f"{path.relative_to(folder)} links outside the import folder: refused")


def unpack(archive: Path, into: Path, max_bytes: int) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            members = zipped.infolist()
            check_unpacked_size(sum(m.file_size for m in members), max_bytes)
            for member in members:
                target = (into / member.filename).resolve()
                is_link = (member.external_attr >> 16) & 0o170000 == 0o120000
                if is_link or not target.is_relative_to(into.resolve()):
                    raise CheckpointRejected(f"the archive's {member.filename!r} links or points outside it: refused")
            zipped.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tarred:
            members = tarred.getmembers()
            check_unpacked_size(sum(m.size for m in members), max_bytes)
            if link := next((m for m in members if m.issym() or m.islnk()), None):
                raise CheckpointRejected(f"the archive's {link.name!r} is a link: archive the files themselves")
            try:
                tarred.extractall(into, filter="data")  # refuses absolute paths, "..", devices
            except tarfile.FilterError as error:
                raise CheckpointRejected(f"the archive is refused: {error}") from None
    else:
        raise CheckpointRejected("the checkpoint is neither a folder nor a zip or tar archive")


def check_unpacked_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise CheckpointRejected(f"the archive unpacks to {size / 2**30:.1f} GiB, more than the "
                                 f"{max_bytes / 2**30:.1f} GiB an upload may hold: put the folder in the import "
                                 "folder and name it instead")


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

"""The model store: content-addressed folders (checkpoints, served ensembles, adapters) and files
(training manifests, lineages), each written to a staging name and renamed into place, so a reader
never sees a half-written entry and an address, once written, never changes.

A folder's address is the SHA-256 over its files in sorted path order (each file's relative path
and its own digest); a file's, the SHA-256 of its bytes. Readers that pin an address check it
before they trust the bytes (`verified_folder`, `read_verified_file`).

Torch-free and Django-free: the web process reads lineages and plans deletions through it, and
the engines write through it. Models are written through their own `save_pretrained` (duck
typing), so nothing here imports the library that made them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

# The files that mark an exported exact-unlearning model (unlearning.sisa, unlearning.s3t); any
# other checkpoint folder is a plain Hugging Face one (`save_pretrained` output).
SISA_ENSEMBLE_MANIFEST = "sisa.json"
S3T_MANIFEST = "s3t.json"
# A LoRA adapter kept as one (an approximate method's result when the operator asked for it): the
# adapter's files, its tokenizer, and the content address of the base it applies to, in the same store.
ADAPTER_MANIFEST = "adapter-base.json"
PLAIN_MLP_MANIFEST = "mlp.json"  # a plain (unsharded) tabular MLP (unlearning.tabular)
SISA_ENSEMBLE, S3T_STACK, TRANSFORMERS, LORA_ADAPTER = "sisa-ensemble", "s3t-stack", "transformers", "lora-adapter"
PLAIN_MLP = "plain-mlp"
STAGING_PREFIX = ".staging-"


def checkpoint_sha256(directory: Path) -> str:
    """SHA-256 over every file of a stored folder (weights, config, tokenizer) in sorted path order.

    Each file contributes its relative path and its own digest, so renaming a file changes the hash too.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def store_directory(write: Callable[[Path], None], store: Path) -> tuple[str, Path]:
    """Let `write` fill a staging folder, then move it to `store/<sha256 of its files>/`."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=store))
    try:
        write(staging)
        sha256 = checkpoint_sha256(staging)
        final = store / sha256
        if final.exists():  # the same bytes were stored before: keep the original
            shutil.rmtree(staging)
        else:
            staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sha256, final


def store_file(data: bytes, store: Path, folder: str, suffix: str) -> tuple[str, Path]:
    """Write `data` as `store/<folder>/<sha256><suffix>`: staged under a unique name, then renamed
    (atomic on one file system; two writers of the same bytes both end with the same file)."""
    sha256 = hashlib.sha256(data).hexdigest()
    path = Path(store) / folder / f"{sha256}{suffix}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(prefix=STAGING_PREFIX, dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as staged:
                staged.write(data)
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
    return sha256, path


def read_verified_file(path: Path, sha256: str) -> bytes:
    """The bytes at `path`, refused unless they still hash to the pinned `sha256`."""
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise RuntimeError(f"{path} hashes to {actual}, not the pinned {sha256}")
    return data


def verified_folder(path: Path, sha256: str) -> Path:
    """`path`, refused unless its files still hash to the pinned `sha256`."""
    actual = checkpoint_sha256(path)
    if actual != sha256:
        raise RuntimeError(f"{path} hashes to {actual}, not the pinned {sha256}")
    return Path(path)


# Keys transformers adds to a tokenizer's config when it is loaded, and writes back on save: they
# describe how it was loaded, not what it is, and would give identical checkpoints different hashes.
_LOAD_TIME_TOKENIZER_KEYS = ("is_local", "local_files_only")


def save_tokenizer(tokenizer, directory: Path) -> None:
    """`tokenizer.save_pretrained`, minus the keys that say how it was loaded."""
    tokenizer.save_pretrained(directory)
    config_path = Path(directory) / "tokenizer_config.json"
    if not config_path.exists():
        return
    config = json.loads(config_path.read_text())
    if any(key in config for key in _LOAD_TIME_TOKENIZER_KEYS):
        for key in _LOAD_TIME_TOKENIZER_KEYS:
            config.pop(key, None)
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def save_checkpoint(model, tokenizer, store: Path) -> tuple[str, Path]:
    """A model and its tokenizer as one content-addressed folder: `store/<sha256>/`."""

    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        save_tokenizer(tokenizer, staging)

    return store_directory(write, store)


def save_adapter_checkpoint(adapter_model, tokenizer, base_sha256: str, store: Path) -> tuple[str, Path]:
    """A peft model's adapter, its tokenizer and the pinned address of its base (`store/<base_sha256>/`):
    the adapter's address covers the base's, so the pair is pinned as one version."""

    def write(staging: Path) -> None:
        # The base is named by its content address, not by the folder it was loaded from: two
        # identical adapters on one base get one address wherever the store lies.
        for config in adapter_model.peft_config.values():
            config.base_model_name_or_path = None
        adapter_model.save_pretrained(staging, save_embedding_layers=False)
        save_tokenizer(tokenizer, staging)
        (staging / ADAPTER_MANIFEST).write_bytes(canonical_json({"base_sha256": base_sha256}))

    return store_directory(write, store)


def adapter_base(path: Path) -> tuple[str, Path]:
    """The pinned address and folder of the base an adapter version applies to."""
    sha256 = json.loads((Path(path) / ADAPTER_MANIFEST).read_text())["base_sha256"]
    return sha256, Path(path).parent / sha256


def checkpoint_format(path: Path) -> str:
    """What a checkpoint folder holds: an S3T base with adapter stacks, a SISA ensemble of shard
    models, a LoRA adapter on a stored base, or a plain Hugging Face model (ours, or an operator's
    own `save_pretrained` output)."""
    path = Path(path)
    if (path / ADAPTER_MANIFEST).is_file():
        return LORA_ADAPTER
    if (path / PLAIN_MLP_MANIFEST).is_file():
        return PLAIN_MLP
    if (path / S3T_MANIFEST).is_file():
        return S3T_STACK
    if (path / SISA_ENSEMBLE_MANIFEST).is_file():
        return SISA_ENSEMBLE
    return TRANSFORMERS


def canonical_json(data) -> bytes:
    """The one serialisation that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def save_lineage(lineage, store: Path) -> tuple[str, Path]:
    """A lineage (anything with `as_dict`: SISA's, S3T's) as `lineage/<sha256>.json`."""
    return store_file(canonical_json(lineage.as_dict()), store, "lineage", ".json")


def load_lineage(path: Path, sha256: str, lineage_type: type):
    """The lineage stored at `path` (a `lineage_type`), refused unless its bytes still hash to `sha256`."""
    return lineage_type.from_dict(json.loads(read_verified_file(path, sha256)))

"""S3T's torch half for causal LMs: the frozen base, the LoRA adapter stacks (peft) the engine in
unlearning.s3t asks for, and loading an exported S3T model. Pure ML code: no Django.

Why peft, with frozen adapters merged rather than stacked as several active peft adapters: merging
an adapter into the weights before training the next one is the same function as keeping it active
and frozen, costs no extra matrix products per training step, and makes the model a step trained
against bit-for-bit the model that `load_s3t_model` rebuilds (which merges the same adapters in the
same order). Each adapter is saved in peft's standard format (adapter_config.json and
adapter_model.safetensors), its `base_model_name_or_path` the base's content address, so a user's
own tooling can apply a stack in order: `PeftModel.from_pretrained(model, adapter).merge_and_unload()`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from unlearning.ensemble import EnsembleCausalLM
from unlearning.lm import context_length, encode, load_pretrained, optimise, train_causal_lm
from unlearning.recipe import TrainingRecipe
from unlearning.s3t import (
    MANIFEST_FORMAT,
    AdapterTraining,
    FrozenBase,
    OrderTraining,
    S3TConfig,
    ShardState,
    choose_orders,
)
from unlearning.store import S3T_MANIFEST, save_checkpoint, store_directory, verified_folder

# GPT-2's attention and MLP projections (Conv1D layers, hence fan_in_fan_out). A regular expression
# rather than a list: peft keeps a list as a set, whose order in adapter_config.json follows
# Python's per-process hash seed, and the order would change the adapter's content address.
GPT2_LORA_TARGETS = r".*\.(c_attn|c_proj|c_fc)$"


def train_base_model(records: Iterable[dict], tokenizer, recipe: TrainingRecipe, store: Path) -> FrozenBase:
    """The frozen base, trained on the records that have no owner (text about no one) and nothing else."""
    general = [record for record in records if not record.get("owner_key")]
    started = time.perf_counter()
    model = train_causal_lm([record["text"] for record in general], tokenizer, recipe)
    seconds = time.perf_counter() - started
    sha256, path = save_checkpoint(model, tokenizer, store)
    return FrozenBase(sha256, path.name, tuple(sorted(r["record_id"] for r in general)), asdict(recipe), seconds)


class S3TAdapterTrainer:
    """Trains a shard's orders of LoRA stacks on one frozen base (unlearning.s3t.AdapterTrainer)."""

    def __init__(self, base: FrozenBase, config: S3TConfig, store: Path):
        self.config, self.store = config, Path(store)
        self.base_model, self.tokenizer = load_pretrained(verified_folder(self.store / base.path, base.sha256))
        # Adapters name their base by content address, not by this machine's path to it, so that the
        # same training gives the same adapter bytes in any store.
        self.base_model.name_or_path = self.base_model.config._name_or_path = base.sha256

    def train_shard(self, shard: int, slices: Sequence[Sequence[dict]]) -> ShardState:
        orders = tuple(self._train_order(shard, index, order, slices)
                       for index, order in enumerate(choose_orders(self.config.slices, self.config.orders_per_shard)))
        return ShardState(shard, orders, served_order=0, active_adapters=self.config.slices, retired_slices=())

    def _train_order(self, shard: int, order_index: int, order: tuple[int, ...],
                     slices: Sequence[Sequence[dict]]) -> OrderTraining:
        model = copy.deepcopy(self.base_model)
        seen: list[dict] = []
        adapters = []
        for position, slice_index in enumerate(order):
            seen += slices[slice_index]
            seed = _derived_seed(self.config.seed, shard, order_index, position)
            adapter, fed_ids, steps, seconds = self._train_adapter(model, seen, seed)
            # No embedding layers to save (LoRA leaves them alone); asking peft to check would look the
            # base up on the Hugging Face hub by name.
            sha256, path = store_directory(partial(adapter.save_pretrained, save_embedding_layers=False), self.store)
            adapters.append(AdapterTraining(position, slice_index, sha256, path.name, tuple(sorted(fed_ids)),
                                            steps, seconds))
            # Merged, the adapter is active and frozen under the next one (see the module docstring).
            model = adapter.merge_and_unload()
        return OrderTraining(order, tuple(adapters))

    def _train_adapter(self, model, records: Sequence[dict], seed: int):
        """A fresh LoRA adapter on `model` (whose own weights stay frozen), trained with AdamW, the rate
        decaying linearly to 0 (memorising facts needs the small final steps). Returns the peft model,
        the ids of every record in a batch it stepped on, steps and seconds."""
        config = self.config
        torch.manual_seed(seed)  # LoRA's A matrices are drawn at random
        with peft_quietly():
            adapter = get_peft_model(model, LoraConfig(
                r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=GPT2_LORA_TARGETS,
                fan_in_fan_out=True,
            ))
        sequences = encode(self.tokenizer, [record["text"] for record in records], context_length(model))
        total_steps = max(1, config.schedule.steps_for(len(sequences)))  # an empty slice still builds a schedule
        started = time.perf_counter()
        log = optimise(adapter, sequences, self.tokenizer.pad_token_id, epochs=config.epochs_per_slice,
                       batch_size=config.batch_size, learning_rate=config.learning_rate, seed=seed,
                       rate_factor=lambda step: 1 - step / total_steps)
        fed_ids = {records[i]["record_id"] for i in log.trained_indices}
        return adapter, fed_ids, log.steps, time.perf_counter() - started


def _derived_seed(*parts: int) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def load_s3t_model(path: Path):
    """(model, tokenizer) of an exported folder: per shard, the base with its adapters merged in
    order; the shards' next-token distributions averaged. Every part must match its sha256."""
    path = Path(path)
    manifest = json.loads((path / S3T_MANIFEST).read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not an exported S3T model ({manifest.get('format')!r})")
    base, tokenizer = load_pretrained(verified_folder(path / manifest["base"]["path"], manifest["base"]["sha256"]))
    members = [_with_adapters(base, [verified_folder(path / a["path"], a["sha256"]) for a in shard["adapters"]])
               for shard in manifest["shards"]]
    return EnsembleCausalLM(members).eval(), tokenizer


def _with_adapters(base, adapter_folders: Sequence[Path]):
    model = copy.deepcopy(base)
    for folder in adapter_folders:
        with peft_quietly():
            model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    return model.eval()


@contextmanager
def peft_quietly():
    """peft asks transformers a question by its deprecated name (the answer is unchanged): keep
    that FutureWarning out of every worker's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield

"""S3T, Sequence-aware Sharded Sliced Training (Chowdhury et al. 2024): exact unlearning that
mostly needs no training at all (DESIGN §8).

The model of the code:

- A *frozen base*: a small GPT-2 trained only on text about no one (records without an owner), so
  no removal request ever reaches it and it is never retrained (`train_base_model`).
- Every other record is placed in one shard and one slice of it by SISA's rule (`unlearning.sisa.assign`):
  a seeded hash of its group, so a person's records share one slice and no placement ever moves.
- Per shard, `orders_per_shard` *orders* of its slices are trained (`choose_orders`). Along an order,
  position p holds one LoRA adapter, trained on the slices at positions 0..p (cumulative, as in the
  paper) with the adapters before it active and frozen. Adapter p has therefore seen exactly the
  records of its order's first p + 1 slices, and the training loop logs the record ids it fed to
  the optimizer at each position: the lineage holds that evidence, not an assumption.
- A deletion *retires* the slices that held the deleted records. In every order, the adapters from
  the first retired slice on are switched off; the shard then serves the order that keeps the most
  adapters, and no training runs. Only when no order keeps `min_active` adapters (the orders are
  exhausted) is the shard retrained from the base, without the deleted records; that also brings
  its retired slices' remaining records back.
- The served model: per shard, the base with the active adapters of its served order merged in;
  across shards, `EnsembleCausalLM` averages the next-token distributions.

Why peft, with frozen adapters merged rather than stacked as several active peft adapters: merging
an adapter into the weights before training the next one is the same function as keeping it active
and frozen, costs no extra matrix products per training step, and makes the model a step trained
against bit-for-bit the model that `load_s3t_model` rebuilds (which merges the same adapters in the
same order). Each adapter is saved in peft's standard format (adapter_config.json and
adapter_model.safetensors), its `base_model_name_or_path` the base's content address, so a user's
own tooling can apply a stack in order: `PeftModel.from_pretrained(model, adapter).merge_and_unload()`.

Paths in the lineage are relative to the content-addressed store. Planning needs neither torch nor
the store: only the functions that train, export or load import torch, so the web process can show
a plan. Pure ML code: no Django.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from unlearning.recipe import TrainingRecipe
from unlearning.sisa import Placement, SisaConfig, SliceSchedule, assign

MANIFEST_NAME = "s3t.json"
MANIFEST_FORMAT = "s3t-served-model/1"
# GPT-2's attention and MLP projections (Conv1D layers, hence fan_in_fan_out). A regular expression
# rather than a list: peft keeps a list as a set, whose order in adapter_config.json follows
# Python's per-process hash seed, and the order would change the adapter's content address.
GPT2_LORA_TARGETS = r".*\.(c_attn|c_proj|c_fc)$"


@dataclass(frozen=True)
class S3TConfig:
    """Everything that decides the trained adapters. The paper's defaults are 4 shards, 8 slices and
    rank 32; fewer shards and slices suit the demo world's few people. Facts need many passes: on a
    30-person world the served model answered 97% of retained people's questions with 40 epochs
    per slice, 30% with 15 (rank 16)."""

    shards: int = 2
    slices: int = 4
    orders_per_shard: int = 4  # the training budget B per shard, at most `slices`
    lora_rank: int = 32
    lora_alpha: int = 64
    learning_rate: float = 3e-3
    epochs_per_slice: int = 40
    batch_size: int = 16
    min_active: int = 1  # fewer active adapters than this in every order: retrain the shard
    seed: int = 0

    @property
    def schedule(self) -> SliceSchedule:
        return SliceSchedule(epochs=self.epochs_per_slice, batch_size=self.batch_size)


@dataclass(frozen=True)
class FrozenBase:
    sha256: str
    path: str  # in the store
    record_ids: tuple[str, ...]  # what the base was trained on: no deletion can reach these
    recipe: dict
    seconds: float

    @classmethod
    def from_dict(cls, data: dict) -> FrozenBase:
        return cls(**{**data, "record_ids": tuple(data["record_ids"])})


@dataclass(frozen=True)
class AdapterTraining:
    """One position of one order: the adapter trained there and what its training loop fed it."""

    position: int
    slice: int  # the slice added at this position; the adapter saw this one and all before it
    sha256: str
    path: str  # in the store
    trained_record_ids: tuple[str, ...]
    steps: int
    seconds: float

    @classmethod
    def from_dict(cls, data: dict) -> AdapterTraining:
        return cls(**{**data, "trained_record_ids": tuple(data["trained_record_ids"])})


@dataclass(frozen=True)
class OrderTraining:
    slices: tuple[int, ...]
    adapters: tuple[AdapterTraining, ...]

    @classmethod
    def from_dict(cls, data: dict) -> OrderTraining:
        return cls(tuple(data["slices"]), tuple(AdapterTraining.from_dict(a) for a in data["adapters"]))


@dataclass(frozen=True)
class ShardState:
    shard: int
    orders: tuple[OrderTraining, ...]
    served_order: int
    active_adapters: int
    retired_slices: tuple[int, ...]  # slices that lost a record since the shard was last trained

    @property
    def served_adapters(self) -> tuple[AdapterTraining, ...]:
        return self.orders[self.served_order].adapters[: self.active_adapters]

    @property
    def trained_adapters(self) -> tuple[AdapterTraining, ...]:
        """Every adapter of every order, served or not: what training this shard cost."""
        return tuple(adapter for order in self.orders for adapter in order.adapters)

    @property
    def training_steps(self) -> int:
        return sum(adapter.steps for adapter in self.trained_adapters)

    @classmethod
    def from_dict(cls, data: dict) -> ShardState:
        return cls(data["shard"], tuple(OrderTraining.from_dict(o) for o in data["orders"]), data["served_order"],
                   data["active_adapters"], tuple(data["retired_slices"]))


@dataclass(frozen=True)
class DeletionRecord:
    """What one executed deletion did: `training_steps` is 0 when it only switched adapters off."""

    deleted_record_ids: tuple[str, ...]
    shards: tuple[int, ...]
    retrained_shards: tuple[int, ...]
    training_steps: int
    seconds: float

    @classmethod
    def from_dict(cls, data: dict) -> DeletionRecord:
        return cls(tuple(data["deleted_record_ids"]), tuple(data["shards"]), tuple(data["retrained_shards"]),
                   data["training_steps"], data["seconds"])


@dataclass(frozen=True)
class S3TLineage:
    config: S3TConfig
    base: FrozenBase
    placements: dict[str, Placement]  # records not yet deleted
    shards: tuple[ShardState, ...]
    deletions: tuple[DeletionRecord, ...]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> S3TLineage:
        return cls(
            config=S3TConfig(**data["config"]),
            base=FrozenBase.from_dict(data["base"]),
            placements={record_id: Placement(**place) for record_id, place in data["placements"].items()},
            shards=tuple(ShardState.from_dict(s) for s in data["shards"]),
            deletions=tuple(DeletionRecord.from_dict(d) for d in data["deletions"]),
        )


@dataclass(frozen=True)
class SwitchedOffAdapter:
    order: int
    position: int
    slice: int
    sha256: str


@dataclass(frozen=True)
class ShardDeletionPlan:
    shard: int
    deleted_record_ids: tuple[str, ...]
    retired_slices: tuple[int, ...]  # after the deletion, earlier retirements included
    active_per_order: tuple[int, ...]  # adapters each order keeps after the deletion
    served_order: int
    active_adapters: int
    switched_off: tuple[SwitchedOffAdapter, ...]  # active before the deletion, not after
    retrain: bool
    estimated_steps: int  # of the retraining; 0 without one
    estimated_seconds: float

    @classmethod
    def from_dict(cls, data: dict) -> ShardDeletionPlan:
        return cls(**{
            **data,
            "deleted_record_ids": tuple(data["deleted_record_ids"]),
            "retired_slices": tuple(data["retired_slices"]),
            "active_per_order": tuple(data["active_per_order"]),
            "switched_off": tuple(SwitchedOffAdapter(**s) for s in data["switched_off"]),
        })


@dataclass(frozen=True)
class S3TDeletionPlan:
    deleted_record_ids: tuple[str, ...]
    shards: tuple[ShardDeletionPlan, ...]  # the affected shards only

    @property
    def retraining_needed(self) -> bool:
        return any(shard.retrain for shard in self.shards)

    def summary(self) -> str:
        return f"Delete {len(self.deleted_record_ids)} records: " + "; ".join(map(_shard_summary, self.shards))

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> S3TDeletionPlan:
        return cls(tuple(data["deleted_record_ids"]), tuple(ShardDeletionPlan.from_dict(s) for s in data["shards"]))


def _shard_summary(plan: ShardDeletionPlan) -> str:
    if plan.retrain:
        return (f"shard {plan.shard} retrains (orders exhausted; about {plan.estimated_steps} steps, "
                f"{plan.estimated_seconds:.1f} s)")
    return (f"shard {plan.shard} serves order {plan.served_order} with {plan.active_adapters} adapters active "
            f"({len(plan.switched_off)} switched off, no retraining)")


def choose_orders(slices: int, budget: int) -> tuple[tuple[int, ...], ...]:
    """`budget` cyclic rotations of (0, 1, ..., slices - 1), their first slices evenly spaced.

    A deletion in slice j leaves an order the adapters before j's position, so what matters is that
    every slice sits late in some order. In rotations every slice holds every position at most once;
    with budget = slices every slice is last in one order and first in another, and after any set of
    deletions some order serves the longest run of untouched slices that follows a retired one.
    Evenly spaced starts keep, for budget < slices, at least slices - ceil(slices / budget) adapters
    after any single deletion. The paper also selects orders by bipartite matching for other
    budgets; rotations are its baseline and already optimal for single deletions at budget = slices.
    """
    if not 1 <= budget <= slices:
        raise ValueError(f"a shard of {slices} slices takes 1 to {slices} orders, not {budget}")
    starts = [round(k * slices / budget) for k in range(budget)]
    return tuple(tuple((start + offset) % slices for offset in range(slices)) for start in starts)


def train_base_model(records: Iterable[dict], tokenizer, recipe: TrainingRecipe, store: Path) -> FrozenBase:
    """The frozen base, trained on the records that have no owner (text about no one) and nothing else."""
    from unlearning.lm import save_checkpoint, train_causal_lm  # torch: only training imports it

    general = [record for record in records if not record.get("owner_key")]
    started = time.perf_counter()
    model = train_causal_lm([record["text"] for record in general], tokenizer, recipe)
    seconds = time.perf_counter() - started
    sha256, path = save_checkpoint(model, tokenizer, store)
    return FrozenBase(sha256, path.name, tuple(sorted(r["record_id"] for r in general)), asdict(recipe), seconds)


def train_s3t(records: Iterable[dict], base: FrozenBase, config: S3TConfig, store: Path) -> S3TLineage:
    """Place every record the base did not see, and train each shard's orders of adapter stacks."""
    in_base = set(base.record_ids)
    placed = [record for record in records if record["record_id"] not in in_base]
    # One placement rule for both exact engines: a record sits where SISA would put it.
    placements = assign(placed, SisaConfig(shards=config.shards, slices=config.slices, seed=config.seed))
    base_model, tokenizer = _load_base(base, store)
    shards = tuple(_train_shard(shard, _slices_of_shard(placed, placements, shard, config), base_model, tokenizer,
                                config, store)
                   for shard in range(config.shards))
    return S3TLineage(config, base, placements, shards, deletions=())


def _load_base(base: FrozenBase, store: Path):
    from unlearning.lm import load_checkpoint  # torch: see train_base_model

    model, tokenizer = load_checkpoint(_verified(Path(store) / base.path, base.sha256))
    # Adapters name their base by content address, not by this machine's path to it, so that the
    # same training gives the same adapter bytes in any store.
    model.name_or_path = model.config._name_or_path = base.sha256
    return model, tokenizer


def _slices_of_shard(records: Iterable[dict], placements: dict[str, Placement], shard: int,
                     config: S3TConfig) -> list[list[dict]]:
    """The shard's placed records by slice, in record-id order so that training does not depend on
    input order. Records not placed (deleted, or the base's) are left out."""
    slices: list[list[dict]] = [[] for _ in range(config.slices)]
    for record in sorted(records, key=lambda r: r["record_id"]):
        place = placements.get(record["record_id"])
        if place and place.shard == shard:
            slices[place.slice].append(record)
    return slices


def _train_shard(shard: int, slices: Sequence[Sequence[dict]], base_model, tokenizer, config: S3TConfig,
                 store: Path) -> ShardState:
    orders = tuple(_train_order(shard, index, order, slices, base_model, tokenizer, config, store)
                   for index, order in enumerate(choose_orders(config.slices, config.orders_per_shard)))
    return ShardState(shard, orders, served_order=0, active_adapters=config.slices, retired_slices=())


def _train_order(shard: int, order_index: int, order: tuple[int, ...], slices: Sequence[Sequence[dict]], base_model,
                 tokenizer, config: S3TConfig, store: Path) -> OrderTraining:
    from unlearning.lm import store_directory  # torch: see train_base_model

    model = copy.deepcopy(base_model)
    seen: list[dict] = []
    adapters = []
    for position, slice_index in enumerate(order):
        seen += slices[slice_index]
        seed = _derived_seed(config.seed, shard, order_index, position)
        adapter, fed_ids, steps, seconds = _train_adapter(model, tokenizer, seen, config, seed)
        # No embedding layers to save (LoRA leaves them alone); asking peft to check would look the
        # base up on the Hugging Face hub by name.
        sha256, path = store_directory(partial(adapter.save_pretrained, save_embedding_layers=False), store)
        adapters.append(AdapterTraining(position, slice_index, sha256, path.name, tuple(sorted(fed_ids)),
                                        steps, seconds))
        # Merged, the adapter is active and frozen under the next one (see the module docstring).
        model = adapter.merge_and_unload()
    return OrderTraining(order, tuple(adapters))


def _derived_seed(*parts: int) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _train_adapter(model, tokenizer, records: Sequence[dict], config: S3TConfig, seed: int):
    """A fresh LoRA adapter on `model` (whose own weights stay frozen), trained with AdamW, the rate
    decaying linearly to 0 (memorising facts needs the small final steps). Returns the peft model,
    the ids of every record in a batch it stepped on, steps and seconds."""
    import torch
    from peft import LoraConfig, get_peft_model

    from unlearning.lm import encode, optimise

    torch.manual_seed(seed)  # LoRA's A matrices are drawn at random
    with _peft_quietly():
        adapter = get_peft_model(model, LoraConfig(
            r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=GPT2_LORA_TARGETS,
            fan_in_fan_out=True,
        ))
    sequences = encode(tokenizer, [record["text"] for record in records], model.config.n_positions)
    total_steps = max(1, config.schedule.steps_for(len(sequences)))  # an empty slice still builds a schedule
    started = time.perf_counter()
    log = optimise(adapter, sequences, tokenizer.pad_token_id, epochs=config.epochs_per_slice,
                   batch_size=config.batch_size, learning_rate=config.learning_rate, seed=seed,
                   rate_factor=lambda step: 1 - step / total_steps)
    fed_ids = {records[i]["record_id"] for i in log.trained_indices}
    return adapter, fed_ids, log.steps, time.perf_counter() - started


def plan_deletion(lineage: S3TLineage, deleted_ids: Iterable[str]) -> S3TDeletionPlan:
    """What deleting these records does, decided from the lineage alone before anything runs."""
    ids = tuple(sorted(set(deleted_ids)))
    _reject_unplaced(lineage, ids)
    by_shard: dict[int, list[str]] = {}
    for record_id in ids:
        by_shard.setdefault(lineage.placements[record_id].shard, []).append(record_id)
    return S3TDeletionPlan(ids, tuple(_plan_shard(lineage, lineage.shards[shard], tuple(shard_ids))
                                      for shard, shard_ids in sorted(by_shard.items())))


def _reject_unplaced(lineage: S3TLineage, ids: Sequence[str]) -> None:
    in_base = set(lineage.base.record_ids)
    if frozen := [i for i in ids if i in in_base]:
        raise ValueError(f"records trained into the frozen base, which S3T never retrains: {', '.join(frozen)}")
    if unknown := [i for i in ids if i not in lineage.placements]:
        raise ValueError("records not in this model's training data (unknown or already deleted): "
                         + ", ".join(unknown))


def _plan_shard(lineage: S3TLineage, state: ShardState, ids: tuple[str, ...]) -> ShardDeletionPlan:
    retired = set(state.retired_slices) | {lineage.placements[i].slice for i in ids}
    before = [_active_length(order.slices, set(state.retired_slices)) for order in state.orders]
    after = [_active_length(order.slices, retired) for order in state.orders]
    # Ties keep the order already served: switching would change the served model for no gain.
    served = max(range(len(after)), key=lambda o: (after[o], o == state.served_order, -o))
    switched_off = tuple(SwitchedOffAdapter(o, a.position, a.slice, a.sha256)
                         for o, order in enumerate(state.orders)
                         for a in order.adapters[after[o]:before[o]])
    retrain = after[served] < lineage.config.min_active
    steps, seconds = _retraining_estimate(lineage, state, ids) if retrain else (0, 0.0)
    return ShardDeletionPlan(state.shard, ids, tuple(sorted(retired)), tuple(after), served, after[served],
                             switched_off, retrain, steps, seconds)


def _active_length(order: Sequence[int], retired: set[int]) -> int:
    """Adapters before the first retired slice: the ones that never saw a deleted record."""
    return next((position for position, slice_index in enumerate(order) if slice_index in retired), len(order))


def _retraining_estimate(lineage: S3TLineage, state: ShardState, deleted: tuple[str, ...]) -> tuple[int, float]:
    """Steps follow from the records that stay (the loop's batching is known exactly); seconds from
    the seconds per step this shard measured when it was last trained."""
    remaining = [0] * lineage.config.slices
    for record_id, place in lineage.placements.items():
        if place.shard == state.shard and record_id not in deleted:
            remaining[place.slice] += 1
    steps = sum(lineage.config.schedule.steps_for(sum(remaining[s] for s in order.slices[: position + 1]))
                for order in state.orders for position in range(len(order.slices)))
    measured_steps = state.training_steps
    seconds_per_step = (sum(adapter.seconds for adapter in state.trained_adapters) / measured_steps
                        if measured_steps else 0.0)
    return steps, steps * seconds_per_step


def execute_deletion(lineage: S3TLineage, plan: S3TDeletionPlan, records: Iterable[dict], store: Path) -> S3TLineage:
    """The lineage after carrying out the plan: adapters switched off, or, where the orders are
    exhausted, the shard retrained from the base on its remaining records (taken from `records`)."""
    if plan != plan_deletion(lineage, plan.deleted_record_ids):
        raise ValueError("the plan was made for another state of this model; plan the deletion again")
    started = time.perf_counter()
    deleted = set(plan.deleted_record_ids)
    placements = {record_id: place for record_id, place in lineage.placements.items() if record_id not in deleted}
    shards = list(lineage.shards)
    for shard_plan in plan.shards:
        if not shard_plan.retrain:
            shards[shard_plan.shard] = replace(shards[shard_plan.shard], served_order=shard_plan.served_order,
                                               active_adapters=shard_plan.active_adapters,
                                               retired_slices=shard_plan.retired_slices)
    retrained = tuple(shard_plan.shard for shard_plan in plan.shards if shard_plan.retrain)
    if retrained:
        shards = _retrain_shards(lineage, shards, retrained, placements, records, store)
    steps = sum(shards[shard].training_steps for shard in retrained)
    event = DeletionRecord(plan.deleted_record_ids, tuple(p.shard for p in plan.shards), retrained, steps,
                           time.perf_counter() - started)
    return replace(lineage, placements=placements, shards=tuple(shards), deletions=lineage.deletions + (event,))


def _retrain_shards(lineage: S3TLineage, shards: list[ShardState], retrained: tuple[int, ...],
                    placements: dict[str, Placement], records: Iterable[dict], store: Path) -> list[ShardState]:
    """Fresh stacks from the base for these shards, on the records still placed in them (deleted
    records have left the placements, so they are not trained on even when `records` holds them)."""
    records = list(records)
    given = {record["record_id"] for record in records}
    if missing := sorted(i for i, place in placements.items() if place.shard in retrained and i not in given):
        raise ValueError(f"retraining needs records that were not given: {', '.join(missing)}")
    base_model, tokenizer = _load_base(lineage.base, store)
    shards = list(shards)
    for shard in retrained:
        slices = _slices_of_shard(records, placements, shard, lineage.config)
        shards[shard] = _train_shard(shard, slices, base_model, tokenizer, lineage.config, store)
    return shards


def export_served_model(lineage: S3TLineage, store: Path) -> tuple[str, Path]:
    """A self-contained, content-addressed folder: the base checkpoint, each shard's active adapters
    in their order, and an s3t.json manifest naming them all by sha256 (no timings, so the same
    served adapters give the same address)."""
    from unlearning.lm import store_directory  # torch: see train_base_model

    store = Path(store)

    def write(folder: Path) -> None:
        shutil.copytree(_verified(store / lineage.base.path, lineage.base.sha256), folder / "base")
        manifest = {"format": MANIFEST_FORMAT, "base": {"sha256": lineage.base.sha256, "path": "base"},
                    "shards": [_export_shard(state, store, folder) for state in lineage.shards]}
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    return store_directory(write, store)


def _export_shard(state: ShardState, store: Path, folder: Path) -> dict:
    adapters = []
    for adapter in state.served_adapters:
        relative = f"shards/{state.shard}/{adapter.position}"
        shutil.copytree(_verified(store / adapter.path, adapter.sha256), folder / relative)
        adapters.append({"position": adapter.position, "slice": adapter.slice, "sha256": adapter.sha256,
                         "path": relative})
    return {"shard": state.shard, "served_order": state.served_order,
            "order_slices": list(state.orders[state.served_order].slices),
            "active_adapters": state.active_adapters, "adapters": adapters}


def load_s3t_model(path: Path):
    """(model, tokenizer) of an exported folder: per shard, the base with its adapters merged in
    order; the shards' next-token distributions averaged. Every part must match its sha256."""
    from unlearning.ensemble import EnsembleCausalLM  # torch: see train_base_model
    from unlearning.lm import load_checkpoint

    path = Path(path)
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path} is not an exported S3T model ({manifest.get('format')!r})")
    base, tokenizer = load_checkpoint(_verified(path / manifest["base"]["path"], manifest["base"]["sha256"]))
    members = [_with_adapters(base, [_verified(path / a["path"], a["sha256"]) for a in shard["adapters"]])
               for shard in manifest["shards"]]
    return EnsembleCausalLM(members).eval(), tokenizer


def _verified(folder: Path, sha256: str) -> Path:
    from unlearning.lm import checkpoint_sha256  # torch: see train_base_model

    if checkpoint_sha256(folder) != sha256:
        raise ValueError(f"{folder} no longer hashes to {sha256}")
    return folder


def _with_adapters(base, adapter_folders: Sequence[Path]):
    from peft import PeftModel

    model = copy.deepcopy(base)
    for folder in adapter_folders:
        with _peft_quietly():
            model = PeftModel.from_pretrained(model, folder).merge_and_unload()
    return model.eval()


@contextmanager
def _peft_quietly():
    """peft asks transformers a question by its deprecated name (the answer is unchanged): keep
    that FutureWarning out of every worker's log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def retrain_without(lineage: S3TLineage, deleted_ids: Iterable[str], records: Iterable[dict], store: Path) -> S3TLineage:
    """The affected shards' adapter stacks retrained from the base without these records, whether or
    not switching adapters off would do: the retrained reference that the audits compare a
    switched-off model with, made by the same machinery."""
    plan = plan_deletion(lineage, deleted_ids)
    deleted = set(plan.deleted_record_ids)
    placements = {record_id: place for record_id, place in lineage.placements.items() if record_id not in deleted}
    affected = tuple(shard_plan.shard for shard_plan in plan.shards)
    shards = _retrain_shards(lineage, list(lineage.shards), affected, placements, records, store)
    return replace(lineage, placements=placements, shards=tuple(shards))

"""S3T, Sequence-aware Sharded Sliced Training (Chowdhury et al. 2024): exact unlearning that
mostly needs no training at all.

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

Paths in the lineage are relative to the content-addressed store. This module is torch-free: the
adapters are trained and loaded by unlearning.s3t_lm (torch, peft), which the engine is handed
as an `AdapterTrainer`, so the web process can show a plan. Pure ML code: no Django.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from unlearning.sisa import Placement, SisaConfig, SliceSchedule, assign
from unlearning.store import S3T_MANIFEST, store_directory, verified_folder

MANIFEST_FORMAT = "s3t-served-model/1"


@dataclass(frozen=True)
class S3TConfig:
    """Everything that decides the trained adapters. The paper's defaults are 4 shards, 8 slices and
    rank 32; fewer shards and slices suit the demo world's few people. Facts need many passes per
    slice (bench/RESULTS.md, "S3T's epochs per slice")."""

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

    @property
    def estimated_steps(self) -> int:
        """0 when every affected shard only switches adapters off."""
        return sum(shard.estimated_steps for shard in self.shards)

    @property
    def estimated_seconds(self) -> float:
        return round(sum(shard.estimated_seconds for shard in self.shards), 3)

    def summary(self) -> str:
        return f"Delete {len(self.deleted_record_ids)} records: " + "; ".join(map(_shard_summary, self.shards))

    def as_dict(self) -> dict:
        return {**asdict(self), "estimated_steps": self.estimated_steps, "estimated_seconds": self.estimated_seconds}

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


class AdapterTrainer(Protocol):
    """Trains one shard's orders of adapter stacks on a lineage's frozen base (torch:
    unlearning.s3t_lm.S3TAdapterTrainer); the engine decides on which records."""

    def train_shard(self, shard: int, slices: Sequence[Sequence[dict]]) -> ShardState: ...


def train_s3t(records: Iterable[dict], base: FrozenBase, config: S3TConfig, trainer: AdapterTrainer) -> S3TLineage:
    """Place every record the base did not see, and train each shard's orders of adapter stacks."""
    in_base = set(base.record_ids)
    placed = [record for record in records if record["record_id"] not in in_base]
    # One placement rule for both exact engines: a record sits where SISA would put it.
    placements = assign(placed, SisaConfig(shards=config.shards, slices=config.slices, seed=config.seed))
    shards = tuple(trainer.train_shard(shard, _slices_of_shard(placed, placements, shard, config))
                   for shard in range(config.shards))
    return S3TLineage(config, base, placements, shards, deletions=())


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


def execute_deletion(lineage: S3TLineage, plan: S3TDeletionPlan, records: Iterable[dict],
                     trainer: AdapterTrainer | None = None) -> S3TLineage:
    """The lineage after carrying out the plan: adapters switched off, or, where the orders are
    exhausted, the shard retrained from the base on its remaining records (taken from `records`) by
    `trainer` (needed only then: `plan.retraining_needed`)."""
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
        shards = _retrain_shards(shards, retrained, placements, records, lineage.config, trainer)
    steps = sum(shards[shard].training_steps for shard in retrained)
    event = DeletionRecord(plan.deleted_record_ids, tuple(p.shard for p in plan.shards), retrained, steps,
                           time.perf_counter() - started)
    return replace(lineage, placements=placements, shards=tuple(shards), deletions=lineage.deletions + (event,))


def _retrain_shards(shards: list[ShardState], retrained: tuple[int, ...], placements: dict[str, Placement],
                    records: Iterable[dict], config: S3TConfig, trainer: AdapterTrainer | None) -> list[ShardState]:
    """Fresh stacks from the base for these shards, on the records still placed in them (deleted
    records have left the placements, so they are not trained on even when `records` holds them)."""
    records = list(records)
    given = {record["record_id"] for record in records}
    if missing := sorted(i for i, place in placements.items() if place.shard in retrained and i not in given):
        raise ValueError(f"retraining needs records that were not given: {', '.join(missing)}")
    if trainer is None:
        raise ValueError(f"shards {list(retrained)} must be retrained: an adapter trainer is needed")
    shards = list(shards)
    for shard in retrained:
        shards[shard] = trainer.train_shard(shard, _slices_of_shard(records, placements, shard, config))
    return shards


def export_served_model(lineage: S3TLineage, store: Path) -> tuple[str, Path]:
    """A self-contained, content-addressed folder: the base checkpoint, each shard's active adapters
    in their order, and an s3t.json manifest naming them all by sha256 (no timings, so the same
    served adapters give the same address)."""
    store = Path(store)

    def write(folder: Path) -> None:
        shutil.copytree(verified_folder(store / lineage.base.path, lineage.base.sha256), folder / "base")
        manifest = {"format": MANIFEST_FORMAT, "base": {"sha256": lineage.base.sha256, "path": "base"},
                    "shards": [_export_shard(state, store, folder) for state in lineage.shards]}
        (folder / S3T_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    return store_directory(write, store)


def _export_shard(state: ShardState, store: Path, folder: Path) -> dict:
    adapters = []
    for adapter in state.served_adapters:
        relative = f"shards/{state.shard}/{adapter.position}"
        shutil.copytree(verified_folder(store / adapter.path, adapter.sha256), folder / relative)
        adapters.append({"position": adapter.position, "slice": adapter.slice, "sha256": adapter.sha256,
                         "path": relative})
    return {"shard": state.shard, "served_order": state.served_order,
            "order_slices": list(state.orders[state.served_order].slices),
            "active_adapters": state.active_adapters, "adapters": adapters}


def retrain_without(lineage: S3TLineage, deleted_ids: Iterable[str], records: Iterable[dict],
                    trainer: AdapterTrainer) -> S3TLineage:
    """The affected shards' adapter stacks retrained from the base without these records, whether or
    not switching adapters off would do: the retrained reference that the audits compare a
    switched-off model with, made by the same machinery."""
    plan = plan_deletion(lineage, deleted_ids)
    deleted = set(plan.deleted_record_ids)
    placements = {record_id: place for record_id, place in lineage.placements.items() if record_id not in deleted}
    affected = tuple(shard_plan.shard for shard_plan in plan.shards)
    shards = _retrain_shards(list(lineage.shards), affected, placements, records, lineage.config, trainer)
    return replace(lineage, placements=placements, shards=tuple(shards))

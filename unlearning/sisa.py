"""SISA (Sharded, Isolated, Sliced, Aggregated training; Bourtoule et al. 2021): exact unlearning
for any model a `Learner` can train, causal LMs and tabular networks alike.

The model of the code:
- `assign` places every training record in one shard and one slice. A person's records (one
  owner_key) share their place, so deleting a person touches one shard and one slice of it.
- Each shard is an isolated model. `train_sisa` trains it slice by slice: slice i continues from
  the checkpoint after slice i-1 on the union of slices 0..i, and every checkpoint is stored
  content-addressed. The `SisaLineage` records, per checkpoint, its parent and the record ids the
  learner logged feeding to its optimizer: what a checkpoint was trained on is evidence, not intent.
- `plan_deletion` says, from the lineage alone (no training, no learner, no torch), which shards a
  set of deleted records touches, from which checkpoint each resumes, and how many optimizer steps
  and seconds that takes; `execute_deletion` carries an approved plan out and returns the new
  lineage. Shards the deletion does not touch keep their checkpoints, byte for byte.
- `export_served_model` writes the ensemble the service serves and pins by sha256: `sisa.json`
  and each shard's final checkpoint. Loaders aggregate the members' predictions
  (`unlearning.loading`).

Plain training is the same code path with one shard and one slice; deleting from it retrains it.
Torch lives in the learners (unlearning.sisa_lm, unlearning.tabular) and the checkpoint store
(unlearning.store) is torch-free, so the web process can compute and show a plan. Pure ML code:
no Django.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from itertools import accumulate
from pathlib import Path
from typing import Any, Protocol

from unlearning.store import SISA_ENSEMBLE_MANIFEST, canonical_json, save_tokenizer, store_directory, verified_folder

SERVED_FORMAT = "sisa-ensemble/1"


@dataclass(frozen=True)
class SisaConfig:
    shards: int = 4
    slices: int = 4
    seed: int = 0  # seeds the placement and every shard model
    # Training compute per shard relative to what plain training spends on the shard's records
    # (SliceSchedule.matching_plain_training): a shard sees 1/shards of the data, and facts about
    # its few people can need more passes than their share (the training commands' defaults).
    epoch_scale: float = 1.0

    def __post_init__(self):
        for name in ("shards", "slices"):
            if getattr(self, name) < 1:
                raise ValueError(f"SISA needs at least 1 {name[:-1]}, not {getattr(self, name)}")
        if not self.epoch_scale > 0:
            raise ValueError(f"SISA's epoch scale must be positive, not {self.epoch_scale}")


@dataclass(frozen=True)
class Placement:
    shard: int
    slice: int


def _seeded_hash(seed: int, *parts) -> int:
    return int(hashlib.sha256(":".join(map(str, (seed, *parts))).encode()).hexdigest(), 16)


def placement_group(record: dict) -> str:
    """A person's records move together; a record about no one is a group of its own."""
    return record.get("owner_key") or record["record_id"]


def assign(records: Iterable[dict], config: SisaConfig) -> dict[str, Placement]:
    """Shard and slice of every record, from sha256(f"{seed}:{group}") alone.

    A place depends on nothing but the seed and the record's group, so adding records never moves
    those already placed (a lineage stays valid as its manifest grows) and the same seed always
    gives the same placement. The hash spreads groups uniformly, so a shard holds about
    groups/shards of them, give or take the square root of that; balancing by counting would
    make every place depend on all the other records.
    """
    placements: dict[str, Placement] = {}
    for record in records:
        if record["record_id"] in placements:
            raise ValueError(f"record {record['record_id']} appears twice in the training records")
        value = _seeded_hash(config.seed, placement_group(record))
        placements[record["record_id"]] = Placement(shard=value % config.shards,
                                                    slice=value // config.shards % config.slices)
    return placements


def _model_seed(config: SisaConfig, shard: int, *slice_index: int) -> int:
    """Seeds for a shard's initial model and for each of its slices: independent of the placement
    hash and of one another, and the same whenever the shard is retrained."""
    return _seeded_hash(config.seed, "model", shard, *slice_index) % 2**31


@dataclass(frozen=True)
class SliceSchedule:
    """A learner's promise: `epochs` passes in batches of `batch_size` over a slice's cumulative
    records. Kept in the lineage, so a deletion's cost is estimated without the learner, and
    checked after every slice, so the estimate is what training then does."""

    epochs: int
    batch_size: int

    def steps_for(self, records: int) -> int:
        return self.epochs * math.ceil(records / self.batch_size)

    @classmethod
    def matching_plain_training(cls, epochs: int, batch_size: int, slices: int, scale: float = 1.0) -> SliceSchedule:
        """Epochs per slice that spend on a shard `scale` times what `epochs` plain epochs spend on
        its records.

        With r slices, slice i trains on i/r of the shard's records, so e epochs per slice cost
        e(r+1)/2 passes over them: e = 2·epochs/(r+1), rounded, matches the plain model's compute.
        """
        return cls(epochs=max(1, round(2 * epochs * scale / (slices + 1))), batch_size=batch_size)


@dataclass(frozen=True)
class SliceTraining:
    """A learner's own log of one slice: the ids of the records in the batches it stepped on."""

    trained_record_ids: frozenset[str]
    steps: int


class Learner(Protocol):
    """Trains one shard's model; the engine decides on which records, in which order, and keeps the lineage."""

    name: str
    schedule: SliceSchedule

    def hyperparameters(self) -> dict: ...

    def initial_state(self, seed: int) -> Any: ...

    def train_slice(self, state: Any, records: Sequence[dict], seed: int) -> SliceTraining:
        """Train `state` in place on `records` (the shard's slices up to this one), taking
        `schedule.steps_for(len(records))` optimizer steps in an order drawn from `seed`."""
        ...

    def save(self, state: Any, directory: Path) -> None: ...

    def load(self, directory: Path) -> Any: ...

    def threads(self) -> int:
        """The intra-op threads training runs with now (recorded in the lineage)."""
        ...

    def pinned_threads(self, threads: int | None) -> AbstractContextManager:
        """A context in which training runs with `threads` (None: as it is)."""
        ...

    def device_description(self) -> str | None:
        """The device it trains on, when not the CPU (recorded in the lineage)."""
        ...


def describe(learner: Learner) -> dict:
    return {"name": learner.name, "hyperparameters": learner.hyperparameters(), "schedule": asdict(learner.schedule)}


@dataclass(frozen=True)
class SliceCheckpoint:
    """A shard's model after one slice, as stored and as trained."""

    slice: int
    sha256: str
    path: str  # relative to the store
    parent_sha256: str | None  # the checkpoint this slice's training continued; None: the shard's initial model
    trained_record_ids: tuple[str, ...]  # as logged by the learner: slices 0..slice, the deleted ones excepted
    steps: int
    seconds: float
    generation: int  # the lineage generation that trained it: 0 the first training, n the n-th deletion


@dataclass(frozen=True)
class SisaLineage:
    """Where every record sits and what every stored checkpoint was trained on; a deletion returns
    the next generation of it."""

    config: SisaConfig
    learner: dict  # name, hyperparameters and slice schedule of the learner that trained every shard
    placements: dict[str, Placement]  # the records the shards are trained on now
    shards: tuple[tuple[SliceCheckpoint, ...], ...]  # per shard, its checkpoints by slice
    generation: int = 0
    # torch's intra-op threads during training. A deletion retrains with as many: float sums split
    # across threads differently round differently, and a shard resumed from a checkpoint equals
    # one retrained from scratch, byte for byte, only when both ran with the same numerics (same
    # thread count, same kind of processor). None: not recorded (lineages from before it was).
    threads: int | None = None
    # The device other than the CPU that trained it (unlearning.numerics.describe_device), whose
    # deterministic kernels a deletion retrains with; None: the CPU.
    device: str | None = None

    @property
    def schedule(self) -> SliceSchedule:
        return SliceSchedule(**self.learner["schedule"])

    def final_checkpoints(self) -> list[SliceCheckpoint]:
        return [checkpoints[-1] for checkpoints in self.shards]

    def steps_of_last_generation(self) -> int:
        """From the learners' own logs: the optimizer steps of the checkpoints the latest generation
        trained (the first training, or the last deletion)."""
        return sum(c.steps for checkpoints in self.shards for c in checkpoints if c.generation == self.generation)

    def seconds_per_step(self) -> float:
        """Measured over this lineage's own training log."""
        checkpoints = [c for shard in self.shards for c in shard]
        steps = sum(c.steps for c in checkpoints)
        return sum(c.seconds for c in checkpoints) / steps if steps else 0.0

    def placements_sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.as_dict()["placements"])).hexdigest()

    def sha256(self) -> str:
        """The whole lineage, timings included: a plan names the lineage it was made for."""
        return hashlib.sha256(canonical_json(self.as_dict())).hexdigest()

    def as_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "learner": self.learner,
            "placements": {record_id: asdict(p) for record_id, p in sorted(self.placements.items())},
            "shards": [[asdict(c) for c in checkpoints] for checkpoints in self.shards],
            "generation": self.generation,
            # Only when recorded: a lineage from before threads were recorded keeps its hash, and so
            # does one trained on the CPU.
            **({"threads": self.threads} if self.threads is not None else {}),
            **({"device": self.device} if self.device is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> SisaLineage:
        return cls(
            config=SisaConfig(**data["config"]),
            learner=data["learner"],
            placements={record_id: Placement(**p) for record_id, p in data["placements"].items()},
            shards=tuple(tuple(checkpoint_from_dict(c) for c in checkpoints) for checkpoints in data["shards"]),
            generation=data["generation"],
            threads=data.get("threads"),
            device=data.get("device"),
        )


def _shard_slices(records: Sequence[dict], placements: dict[str, Placement], config: SisaConfig,
                  shard: int) -> list[list[dict]]:
    """A shard's placed records, slice by slice, in the manifest's order (training order depends on it)."""
    slices: list[list[dict]] = [[] for _ in range(config.slices)]
    for record in records:
        place = placements.get(record["record_id"])
        if place is not None and place.shard == shard:
            slices[place.slice].append(record)
    return slices


def _train_slices(learner: Learner, state: Any, slices: list[list[dict]], first_slice: int, parent: str | None,
                  *, config: SisaConfig, shard: int, store: Path, generation: int) -> list[SliceCheckpoint]:
    """Train a shard's slices from `first_slice` on, storing a checkpoint after each."""
    cumulative = [record for records in slices[:first_slice] for record in records]
    checkpoints = []
    for index in range(first_slice, len(slices)):
        cumulative += slices[index]
        started = time.perf_counter()
        log = learner.train_slice(state, cumulative, _model_seed(config, shard, index))
        seconds = time.perf_counter() - started
        promised = learner.schedule.steps_for(len(cumulative))
        if log.steps != promised:
            raise RuntimeError(f"{learner.name} took {log.steps} steps on slice {index} of shard {shard}, "
                               f"its schedule promised {promised}: deletion plans would be wrong")
        sha256, path = store_directory(lambda staging: learner.save(state, staging), store)
        checkpoints.append(SliceCheckpoint(
            slice=index, sha256=sha256, path=path.relative_to(store).as_posix(), parent_sha256=parent,
            trained_record_ids=tuple(sorted(log.trained_record_ids)), steps=log.steps, seconds=round(seconds, 4),
            generation=generation,
        ))
        parent = sha256
    return checkpoints


def train_sisa(records: Sequence[dict], learner: Learner, config: SisaConfig, store: Path) -> SisaLineage:
    """Train every shard slice by slice, a checkpoint after each slice, and return the lineage."""
    store = Path(store)
    placements = assign(records, config)
    empty = sorted(set(range(config.shards)) - {p.shard for p in placements.values()})
    if empty:  # an untrained member would drag the ensemble towards noise
        raise ValueError(f"shards {empty} would hold no records: use fewer than {config.shards} shards")
    shards = tuple(
        tuple(_train_slices(learner, learner.initial_state(_model_seed(config, shard)),
                            _shard_slices(records, placements, config, shard), 0, None,
                            config=config, shard=shard, store=store, generation=0))
        for shard in range(config.shards)
    )
    return SisaLineage(config=config, learner=describe(learner), placements=placements, shards=shards,
                       threads=learner.threads(), device=learner.device_description())


@dataclass(frozen=True)
class SliceRetraining:
    slice: int
    record_ids: tuple[str, ...]  # the slice's own records once the deletion is done
    cumulative_records: int  # what this slice trains on: slices 0..slice
    estimated_steps: int


@dataclass(frozen=True)
class ShardRetraining:
    shard: int
    deleted_record_ids: tuple[str, ...]
    first_slice: int  # the earliest slice holding a deleted record: retraining starts there
    resume_from_sha256: str | None  # the checkpoint after the slice before; None: from the initial model
    resume_from_path: str | None
    slices: tuple[SliceRetraining, ...]
    estimated_steps: int
    estimated_seconds: float


@dataclass(frozen=True)
class DeletionPlan:
    """What deleting a batch of records will retrain and cost, worked out before any training."""

    lineage_sha256: str
    deleted_record_ids: tuple[str, ...]
    shards: tuple[ShardRetraining, ...]
    unaffected_shards: tuple[int, ...]
    estimated_steps: int
    estimated_seconds: float
    full_retraining_steps: int  # every shard from scratch on the remaining records: the yardstick of SISA's saving

    def summary(self) -> str:
        starts = "; ".join(
            f"shard {s.shard} from slice {s.first_slice}, resuming checkpoint {s.resume_from_sha256[:12]}"
            if s.resume_from_sha256 else f"shard {s.shard} from scratch" for s in self.shards)
        total_shards = len(self.shards) + len(self.unaffected_shards)
        saving = self.full_retraining_steps / self.estimated_steps if self.estimated_steps else math.inf
        workers = len(self.shards)
        parallel = (f", ~{self.seconds_with_workers(workers):.1f} s on {workers} workers (one task per shard)"
                    if workers > 1 else "")
        return (f"Delete {len(self.deleted_record_ids)} records: retrain {len(self.shards)} of {total_shards} shards "
                f"({starts}). About {self.estimated_steps} optimizer steps (~{self.estimated_seconds:.1f} s on one "
                f"worker{parallel}); retraining every shard from scratch would take {self.full_retraining_steps} "
                f"({saving:.1f}x).")

    def seconds_with_workers(self, workers: int) -> float:
        """The estimate when the shards are retrained by `workers` workers at once, each taking the
        longest shard left (the join waits for the slowest worker)."""
        loads = [0.0] * max(1, min(workers, len(self.shards)))
        for seconds in sorted((s.estimated_seconds for s in self.shards), reverse=True):
            loads[loads.index(min(loads))] += seconds
        return round(max(loads), 3)

    def as_dict(self) -> dict:
        return {**asdict(self), "estimated_seconds_by_workers": {
            str(workers): self.seconds_with_workers(workers) for workers in range(1, len(self.shards) + 1)}}

    @classmethod
    def from_dict(cls, data: dict) -> DeletionPlan:
        data = {key: value for key, value in data.items() if key != "estimated_seconds_by_workers"}
        shards = tuple(
            ShardRetraining(**{**s, "deleted_record_ids": tuple(s["deleted_record_ids"]),
                               "slices": tuple(SliceRetraining(**{**r, "record_ids": tuple(r["record_ids"])})
                                               for r in s["slices"])})
            for s in data["shards"])
        return cls(**{**data, "deleted_record_ids": tuple(data["deleted_record_ids"]), "shards": shards,
                      "unaffected_shards": tuple(data["unaffected_shards"])})


def _remaining_slice_ids(remaining: dict[str, Placement], config: SisaConfig, shard: int) -> list[list[str]]:
    slice_ids: list[list[str]] = [[] for _ in range(config.slices)]
    for record_id, place in sorted(remaining.items()):
        if place.shard == shard:
            slice_ids[place.slice].append(record_id)
    return slice_ids


def _slice_retraining(schedule: SliceSchedule, slice_ids: list[list[str]], first_slice: int) -> tuple[SliceRetraining, ...]:
    cumulative = list(accumulate(len(ids) for ids in slice_ids))
    return tuple(SliceRetraining(index, tuple(slice_ids[index]), cumulative[index], schedule.steps_for(cumulative[index]))
                 for index in range(first_slice, len(slice_ids)))


def _plan_shard(lineage: SisaLineage, shard: int, deleted: list[str], remaining: dict[str, Placement],
                seconds_per_step: float) -> ShardRetraining:
    deleted_here = [record_id for record_id in deleted if lineage.placements[record_id].shard == shard]
    first_slice = min(lineage.placements[record_id].slice for record_id in deleted_here)
    slices = _slice_retraining(lineage.schedule, _remaining_slice_ids(remaining, lineage.config, shard), first_slice)
    resume = lineage.shards[shard][first_slice - 1] if first_slice else None
    steps = sum(s.estimated_steps for s in slices)
    return ShardRetraining(
        shard=shard, deleted_record_ids=tuple(deleted_here), first_slice=first_slice,
        resume_from_sha256=resume.sha256 if resume else None, resume_from_path=resume.path if resume else None,
        slices=slices, estimated_steps=steps, estimated_seconds=round(steps * seconds_per_step, 3),
    )


def plan_deletion(lineage: SisaLineage, deleted_ids: Iterable[str]) -> DeletionPlan:
    """The retraining that deleting these records (one or many requests' worth) takes, from the
    lineage alone: estimated steps from the learner's schedule, seconds from the lineage's own
    measured seconds per step."""
    deleted_set = set(deleted_ids)
    deleted = sorted(deleted_set)
    if not deleted:
        raise ValueError("a deletion plan needs at least one record id")
    unknown = [record_id for record_id in deleted if record_id not in lineage.placements]
    if unknown:
        raise ValueError(f"not in this model's lineage (unknown, or deleted before): {', '.join(unknown)}")
    remaining = {record_id: p for record_id, p in lineage.placements.items() if record_id not in deleted_set}
    affected = sorted({lineage.placements[record_id].shard for record_id in deleted})
    seconds_per_step = lineage.seconds_per_step()
    shards = tuple(_plan_shard(lineage, shard, deleted, remaining, seconds_per_step) for shard in affected)
    steps = sum(s.estimated_steps for s in shards)
    full_retraining = [_slice_retraining(lineage.schedule, _remaining_slice_ids(remaining, lineage.config, shard), 0)
                       for shard in range(lineage.config.shards)]
    return DeletionPlan(
        lineage_sha256=lineage.sha256(), deleted_record_ids=tuple(deleted), shards=shards,
        unaffected_shards=tuple(s for s in range(lineage.config.shards) if s not in affected),
        estimated_steps=steps, estimated_seconds=round(steps * seconds_per_step, 3),
        full_retraining_steps=sum(s.estimated_steps for slices in full_retraining for s in slices),
    )


def _load_verified(learner: Learner, store: Path, checkpoint: SliceCheckpoint) -> Any:
    """Resume only from the bytes the lineage names."""
    return learner.load(verified_folder(store / checkpoint.path, checkpoint.sha256))


def execute_deletion(lineage: SisaLineage, plan: DeletionPlan, records: Sequence[dict], learner: Learner,
                     store: Path, *, from_scratch: bool = False) -> SisaLineage:
    """Carry out an approved plan: retrain each affected shard on its records minus the deleted
    ones, from the planned checkpoint; the other shards keep theirs. `records` is the manifest:
    only records still placed in the lineage are trained on, so records deleted earlier stay out.

    With `from_scratch` the affected shards restart from their initial models instead: the
    retrained reference the audits compare against, made by the same machinery. Both train with
    the lineage's thread count (`SisaLineage.threads`).

    The shards are independent: `retrain_shard` of each (here one after another, or one task per
    shard on several workers) and then `assemble_deletion` give the same lineage.
    """
    retrained = {s.shard: retrain_shard(lineage, plan, s.shard, records, learner, store, from_scratch=from_scratch)
                 for s in plan.shards}
    return assemble_deletion(lineage, plan, retrained)


def retrain_shard(lineage: SisaLineage, plan: DeletionPlan, shard: int, records: Sequence[dict], learner: Learner,
                  store: Path, *, from_scratch: bool = False) -> tuple[SliceCheckpoint, ...]:
    """One affected shard of the plan retrained: its checkpoints after the deletion, the kept ones
    (before the first affected slice) and the retrained ones, all in the store."""
    store = Path(store)
    check_executable(lineage, plan, learner)
    shard_plan = next((s for s in plan.shards if s.shard == shard), None)
    if shard_plan is None:
        raise ValueError(f"shard {shard} is not one the plan retrains ({[s.shard for s in plan.shards]})")
    placements = remaining_placements(lineage, plan)
    missing = sorted(set(placements) - {r["record_id"] for r in records})
    if missing:
        raise ValueError(f"the records lack {len(missing)} placed ids, e.g. {', '.join(missing[:5])}")
    first_slice = 0 if from_scratch else shard_plan.first_slice
    kept = lineage.shards[shard][:first_slice]
    with learner.pinned_threads(lineage.threads):
        state = (_load_verified(learner, store, kept[-1]) if kept
                 else learner.initial_state(_model_seed(lineage.config, shard)))
        retrained = _train_slices(learner, state, _shard_slices(records, placements, lineage.config, shard),
                                  first_slice, kept[-1].sha256 if kept else None, config=lineage.config,
                                  shard=shard, store=store, generation=lineage.generation + 1)
    return kept + tuple(retrained)


def check_executable(lineage: SisaLineage, plan: DeletionPlan, learner: Learner) -> None:
    if plan.lineage_sha256 != lineage.sha256():
        raise ValueError("the plan was made for another lineage: plan the deletion again")
    if canonical_json(describe(learner)) != canonical_json(lineage.learner):
        raise ValueError(f"the lineage was trained by {lineage.learner}, not by {describe(learner)}")
    if learner.device_description() != lineage.device:
        # A shard resumed on another device than its earlier slices' would not equal the same shard
        # retrained from scratch: the byte identity SISA promises holds only with the same numerics.
        raise ValueError(f"the lineage was trained on {lineage.device or 'the CPU'}, and this worker computes on "
                         f"{learner.device_description() or 'the CPU'}: set UNLEARNING_DEVICE so that its deletions "
                         "run where it was trained")


def remaining_placements(lineage: SisaLineage, plan: DeletionPlan) -> dict[str, Placement]:
    deleted = set(plan.deleted_record_ids)
    return {record_id: p for record_id, p in lineage.placements.items() if record_id not in deleted}


def assemble_deletion(lineage: SisaLineage, plan: DeletionPlan,
                      retrained: Mapping[int, Sequence[SliceCheckpoint]]) -> SisaLineage:
    """The lineage after the plan, from every affected shard's checkpoints (`retrain_shard`'s)."""
    if plan.lineage_sha256 != lineage.sha256():
        raise ValueError("the plan was made for another lineage: plan the deletion again")
    if sorted(retrained) != sorted(s.shard for s in plan.shards):
        raise ValueError(f"the plan retrains shards {[s.shard for s in plan.shards]}, not {sorted(retrained)}")
    shards = list(lineage.shards)
    for shard, checkpoints in retrained.items():
        shards[shard] = tuple(checkpoints)
    return replace(lineage, placements=remaining_placements(lineage, plan), shards=tuple(shards),
                   generation=lineage.generation + 1)


def checkpoint_from_dict(data: dict) -> SliceCheckpoint:
    return SliceCheckpoint(**{**data, "trained_record_ids": tuple(data["trained_record_ids"])})


def served_manifest(lineage: SisaLineage) -> dict:
    """`sisa.json`: what the served ensemble is made of. Free of timings, so the same shards give
    the same served sha256."""
    return {
        "format": SERVED_FORMAT,
        "config": asdict(lineage.config),
        "learner": lineage.learner,
        "generation": lineage.generation,
        "placements_sha256": lineage.placements_sha256(),
        "shards": [{"shard": shard, "path": f"shards/{shard}", "sha256": checkpoints[-1].sha256,
                    "slice_sha256": [c.sha256 for c in checkpoints],
                    "records": sum(p.shard == shard for p in lineage.placements.values())}
                   for shard, checkpoints in enumerate(lineage.shards)],
    }


def export_served_model(lineage: SisaLineage, store: Path, tokenizer=None) -> tuple[str, Path]:
    """Write the served ensemble into the content-addressed store: `sisa.json`, each shard's final
    checkpoint under `shards/<k>/` and, for LMs, the tokenizer at the root (where loaders look)."""
    store = Path(store)

    def write(staging: Path) -> None:
        for shard, checkpoint in enumerate(lineage.final_checkpoints()):
            shutil.copytree(store / checkpoint.path, staging / "shards" / str(shard))
        if tokenizer is not None:
            save_tokenizer(tokenizer, staging)
        (staging / SISA_ENSEMBLE_MANIFEST).write_text(json.dumps(served_manifest(lineage), indent=2, sort_keys=True) + "\n")

    return store_directory(write, store)


def read_served_manifest(path: Path) -> dict:
    return json.loads((Path(path) / SISA_ENSEMBLE_MANIFEST).read_text())


def served_member_dirs(path: Path) -> list[Path]:
    return [Path(path) / shard["path"] for shard in read_served_manifest(path)["shards"]]

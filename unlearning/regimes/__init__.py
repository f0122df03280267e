"""Training regimes: how the service trained a model decides how a record can leave it.

One module per regime, registered by name (unlearning.models.TrainingRegime's values). A regime
answers every per-regime question the service asks:

- before approval: what deleting records will do and cost (`plan`, a `Plan`), and what retraining a
  reference without them would cost (`reference_steps`, the audits' budget check);
- in a worker: carry the deletion out (`execute`, exact regimes only: a plain model is unlearned
  by an approximate method instead, `method_for` its kind), build the retrained reference by the same
  machinery (`reference`), and train a governed model in the first place (`train`);
- what its lineage is (`lineage_type`: where every record sits; None for a plain model).

Regimes are pure Python: no Django, and no torch. What trains (torch) is handed to them as a
`Learners` (unlearning.learners), so the web process plans deletions through the same modules the
workers execute them with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelState:
    """A stored model version as a regime sees it (no Django)."""

    kind: str  # causal_lm, classifier or regressor
    path: Path
    sha256: str
    lineage: Any  # the regime's lineage type, or None for a plain model
    recipe: dict  # how the original was trained; empty for a model the service did not train
    training_records: int  # records the original was trained on
    removed_record_ids: frozenset[str] = field(default_factory=frozenset)  # by earlier deletions
    # Seconds an optimizer step of an approximate method took on this model, by method, as its latest
    # job of that method measured ("": the latest job of any method).
    seconds_per_step: Mapping[str, float] = field(default_factory=dict)


class Plan(Protocol):
    """What a deletion will do, worked out before any training: every plan answers these."""

    @property
    def estimated_steps(self) -> int | None:
        """Optimizer steps it will take (None: an approximate method stops when its measures say)."""
        ...

    @property
    def estimated_seconds(self) -> float | None:
        """From the lineage's measured seconds per step (None: nothing measured)."""
        ...

    def summary(self) -> str: ...

    def as_dict(self) -> dict: ...


@dataclass(frozen=True)
class Deletion:
    """A model stored after an exact deletion (or as the reference retrained without the records)."""

    plan: Plan
    lineage: Any  # the lineage after it
    sha256: str
    path: Path
    steps: int  # optimizer steps it took (0: S3T only switched adapters off)


@dataclass(frozen=True)
class Workbench:
    """What a regime's worker side is handed: the store, the training manifest, and the learners."""

    store: Path
    records: Sequence[dict]
    learners: Any  # unlearning.learners.CausalLMLearners or TabularLearners


@dataclass(frozen=True)
class Trained:
    sha256: str
    path: Path  # the served model, content-addressed
    lineage: Any


class Regime(Protocol):
    name: str
    label: str  # what the admin and the API's choices say
    exact: bool  # removal by construction; otherwise an approximate method (suppression)
    lineage_type: type | None
    config_type: type | None  # the hyperparameters of its training (SisaConfig, S3TConfig), if any
    model_kinds: frozenset[str]  # unlearning.models.ModelKind values it can govern
    trains: bool  # whether the service trains its models (`train`); an external one is registered as it is

    def method_for(self, kind: str) -> str:
        """What its jobs run on a model of this kind, unless an operator chooses another method."""
        ...

    def configure(self, *, shards: int, slices: int, seed: int, epoch_scale: float) -> Any:
        """Its training hyperparameters from the training commands' options (None: it has none)."""
        ...

    def held(self, model: ModelState, record_ids: Sequence[str]) -> list[str]:
        """The records this version still holds (an earlier deletion took out the rest)."""
        ...

    def plan(self, model: ModelState, record_ids: Sequence[str], method: str, params: dict | None = None) -> Plan:
        """`method` and its `params` (overrides of its defaults): what an approximate regime's job will run."""
        ...

    def reference_steps(self, model: ModelState, record_ids: Sequence[str]) -> int | None:
        """At most how many optimizer steps the retrained reference without these records costs;
        None when it cannot be retrained (no recipe, or no record left to take out)."""
        ...

    def execute(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion: ...

    def parts(self, plan: Plan) -> list[int]:
        """The pieces of an exact deletion that may run on several workers at once (SISA: the
        affected shards), each by `execute_part`, then `join`ed into the same Deletion `execute`
        makes. Empty: `execute` runs it whole, and the regime needs neither of the two."""
        ...

    def execute_part(self, model: ModelState, record_ids: Sequence[str], part: int, bench: Workbench) -> dict:
        """One piece, stored; what `join` needs of it, as JSON."""
        ...

    def join(self, model: ModelState, record_ids: Sequence[str], done: Mapping[int, dict], bench: Workbench) -> Deletion:
        ...

    def reference(self, model: ModelState, record_ids: Sequence[str], bench: Workbench) -> Deletion: ...

    def train(self, training: Sequence[dict], bench: Workbench, config: Any) -> Trained: ...


REGIMES: dict[str, Regime] = {}


def register(regime: Regime) -> Regime:
    REGIMES[regime.name] = regime
    return regime


def get_regime(name: str) -> Regime:
    try:
        return REGIMES[name]
    except KeyError:
        raise ValueError(f"unknown training regime {name!r} (known: {', '.join(sorted(REGIMES))})") from None


def regime_of_lineage(lineage) -> str:
    """The regime whose lineage this is (a plain model has none)."""
    return next((r.name for r in REGIMES.values() if r.lineage_type is not None and isinstance(lineage, r.lineage_type)),
                "plain")


# Each registers itself; this order is the order of unlearning.models.TrainingRegime's choices.
from unlearning.regimes import plain, sisa, s3t, external  # noqa: E402,F401,I001

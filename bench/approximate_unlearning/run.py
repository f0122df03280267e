"""Benchmark of the approximate unlearning library (issue 12), in the shape of MUSE's Table 3: every
language-model method, on its full parameters and through LoRA, forgetting 1, 4 and 16 people of
the demo world, beside the original and a model retrained without them; then the utility each
method keeps over 1, 2, 4 and 8 sequential requests. With --tabular, the tabular methods on plain
MLPs (digits, diabetes) against retraining. Pure ML (no Django, no database).

    .venv/bin/python bench/approximate_unlearning/run.py            # the demo world (200 people, 40 epochs)
    .venv/bin/python bench/approximate_unlearning/run.py --quick    # 40 people, 20 epochs, 1 and 4 people
    python3 bench/approximate_unlearning/run.py --workers 21        # on a GPU: one process per method and path
    .venv/bin/python bench/approximate_unlearning/run.py --tabular  # digits and diabetes, 3 seeds (CPU)

Measures, for the forgotten people (MUSE's names where they have one):
- forget QA: greedy QA accuracy on their questions; VerbMem: ROUGE-L of the greedy continuation of
  their texts' first halves (questions' answers);
- PrivLeak: (AUC − AUC_retrained) / AUC_retrained of the LOSS attack separating their texts from
  never-trained people's of the same kinds (0 is the retrained model's own leak; MUSE's goal: near 0);
- retained QA (a fixed sample of 200 retained people's questions, as a share of the original's) and
  the loss on text about no one (general-text loss; the retained texts' loss where a world has none).
Every method runs in the guarded loop with its published defaults; the target is the never-trained
texts' loss under the original. Goal (issue 12): |PrivLeak| ≤ 5% with ≥ 95% of the original's
retained QA, which none of MUSE's eight methods reached.

Prints progress to stderr and a Markdown report to stdout (paste into bench/RESULTS.md); with
--json, every row as JSON too. Wall times are on the machine it ran on.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from audits.checks.extraction import verbatim_rouge  # noqa: E402
from audits.checks.knowledge_qa import KnowledgeQAParams, qa_correctness  # noqa: E402
from audits.metrics import roc_auc  # noqa: E402
from audits.sets import audit_sets, every_nth  # noqa: E402
from unlearning.demo_world import build_demo_model  # noqa: E402
from unlearning.lm import TrainingRecipe, mean_text_loss, text_losses, train_causal_lm  # noqa: E402
from unlearning.loading import load_checkpoint  # noqa: E402
from unlearning.manifest import read_manifest  # noqa: E402
from unlearning.methods import METHODS, QA, RowData, UnlearningData, UnlearningFailed, get_method, methods_for  # noqa: E402
from unlearning.methods.rows import RowLoss  # noqa: E402
from unlearning.numerics import device  # noqa: E402
from unlearning.tabular import (CLASSIFICATION, PLAIN_CONFIG, MLPRecipe, TabularEnsemble, TabularLearner,  # noqa: E402
                                load_tabular)
from unlearning.world import WorldConfig  # noqa: E402

RETAINED_QA_SAMPLE = 200
SEQUENTIAL_CHECKPOINTS = (1, 2, 4, 8)
PRIVLEAK_GOAL, RETAINED_QA_GOAL = 0.05, 0.95
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f} s] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    model: str  # original | retrained | <method> (full) | <method> (LoRA)
    people: int
    forget_qa: float
    verbmem: float
    privleak: float
    retained_qa: float  # as a share of the original's
    general_loss: float
    seconds: float | None = None
    stopped_because: str = ""
    steps: int | None = None

    @property
    def meets_goal(self) -> bool:
        return abs(self.privleak) <= PRIVLEAK_GOAL and self.retained_qa >= RETAINED_QA_GOAL


@dataclass
class World:
    """What every process measures against: the stored original and, per forget size, its sets."""

    checkpoint: Path
    manifest: list[dict]
    holdout: list[dict]
    recipe: TrainingRecipe
    people: list[str]  # trained people's owner keys, in the world's order
    # Per forget size: the original's and the retrained model's measures.
    baselines: dict[int, dict[str, dict]] = field(default_factory=dict)


def forget_ids(world: World, people: int, first: int = 0) -> set[str]:
    keys = set(world.people[first : first + people])
    return {r["record_id"] for r in world.manifest if r.get("owner_key") in keys}


def measures(model, tokenizer, world: World, ids: set[str]) -> dict:
    sets = audit_sets(world.manifest, world.holdout, ids, ids)
    qa = KnowledgeQAParams()
    retained = every_nth(sets.retain_qa, RETAINED_QA_SAMPLE)
    member, nonmember = text_losses(model, tokenizer, sets.forget_texts), text_losses(model, tokenizer, sets.holdout_texts)
    return {
        "forget_qa": statistics.fmean(qa_correctness(model, tokenizer, sets.forget_qa, qa)),
        "verbmem": statistics.fmean(verbatim_rouge(model, tokenizer, sets.extraction)),
        "auc": roc_auc([-x for x in member], [-x for x in nonmember]),  # lower loss: more member-like
        "retained_qa": statistics.fmean(qa_correctness(model, tokenizer, retained, qa)),
        "general_loss": mean_text_loss(model, tokenizer, sets.general_texts or sets.retain_texts),
    }


def row(name: str, people: int, measured: dict, baseline: dict, **run) -> Row:
    """A model's measures against the original's (retained QA) and the retrained model's (PrivLeak)."""
    original, retrained = baseline["original"], baseline["retrained"]
    return Row(name, people, measured["forget_qa"], measured["verbmem"],
               (measured["auc"] - retrained["auc"]) / retrained["auc"], measured["retained_qa"] / original["retained_qa"],
               measured["general_loss"], **run)


def unlearning_data(world: World, ids: set[str], model, tokenizer, removed: set[str] = frozenset()) -> UnlearningData:
    """Forget `ids`; retain what neither they nor earlier requests (`removed`) hold."""
    retained = [r for r in world.manifest if r["record_id"] not in ids | removed]
    return UnlearningData(
        forget_texts=[r["text"] for r in world.manifest if r["record_id"] in ids],
        retain_texts=[r["text"] for r in retained],
        target_forget_loss=mean_text_loss(model, tokenizer, [r["text"] for r in world.holdout]),
        retain_qa=[QA(f"Question: {r['question']}\nAnswer:", r["answer"]) for r in retained if r.get("question")],
    )


def unlearn(method_name: str, lora: bool, model, tokenizer, data: UnlearningData, original=None):
    method = get_method(method_name)
    params = method.params({"lora_rank": 8} if lora else {})
    started = time.perf_counter()
    try:
        outcome = method.unlearn(model, tokenizer, data, params, original=original)
        return outcome.model, time.perf_counter() - started, outcome.stopped_because, outcome.steps
    except UnlearningFailed as failed:
        return None, time.perf_counter() - started, f"failed: {failed}", failed.history[-1]["step"]


def label(method_name: str, lora: bool) -> str:
    return f"{method_name} ({'LoRA r=8' if lora else 'full'})"


def method_rows(task: tuple[str, bool, World, list[int]]) -> list[Row]:
    """One method on one path forgetting each size from the original. Run in its own process."""
    method_name, lora, world, sizes = task
    torch.set_num_threads(1)  # many of these share the machine's cores
    original, tokenizer = load_checkpoint(world.checkpoint)
    rows = []
    for people in sizes:
        ids = forget_ids(world, people)
        model, seconds, why, steps = unlearn(method_name, lora, copy.deepcopy(original), tokenizer,
                                             unlearning_data(world, ids, original, tokenizer))
        after = measures(model, tokenizer, world, ids) if model is not None else world.baselines[people]["original"]
        rows.append(row(label(method_name, lora), people, after, world.baselines[people], seconds=seconds,
                        stopped_because=why, steps=steps))
        log(f"{label(method_name, lora)}, {people} people: {why[:60]} after {steps} steps, {seconds:.0f} s "
            f"ROW {json.dumps(rows[-1].__dict__)}")  # in the log too: a run cut short keeps what finished
    return rows


def sequential_task(task: tuple[str, World, int]) -> list[dict]:
    method_name, world, requests = task
    torch.set_num_threads(1)
    original, tokenizer = load_checkpoint(world.checkpoint)
    return sequential_utility(method_name, world, original, tokenizer, requests)


def sequential_utility(method_name: str, world: World, original, tokenizer, requests: int) -> list[dict]:
    """Requests of one person each, each job on the latest version: retained QA and general-text
    loss after 1, 2, 4 and 8 of them, relative to the original."""
    untouched = forget_ids(world, requests)  # measured on people no request touches
    start = measures(original, tokenizer, world, untouched)
    model, points, removed = copy.deepcopy(original), [], set()
    for request in range(1, requests + 1):
        ids = forget_ids(world, 1, first=request - 1)
        result, _, why, _ = unlearn(method_name, False, model, tokenizer,
                                    unlearning_data(world, ids, model, tokenizer, removed), original=original)
        removed |= ids
        model = result if result is not None else model  # a failed job leaves the version as it was
        if request in SEQUENTIAL_CHECKPOINTS:
            now = measures(model, tokenizer, world, untouched)
            points.append({"method": method_name, "requests": request, "stopped_because": why,
                           "retained_qa": now["retained_qa"] / start["retained_qa"],
                           "general_loss_change": now["general_loss"] / start["general_loss"] - 1})
            log(f"{method_name} after {request} requests: POINT {json.dumps(points[-1])}")
    log(f"{method_name}: {requests} sequential requests done")
    return points


def build_world(args, store: Path) -> World:
    world_config = WorldConfig(people=args.people_in_world, seed=0)
    recipe = TrainingRecipe(epochs=args.epochs, seed=0)
    log(f"training the demo world's model ({args.people_in_world} people, {args.epochs} epochs) on {device()}")
    demo = build_demo_model(world_config, recipe, store)
    world = World(demo.checkpoint_path, read_manifest(demo.training_manifest), read_manifest(demo.holdout_manifest),
                  recipe, [person.owner_key for person in demo.world.trained_people])
    original, tokenizer = load_checkpoint(demo.checkpoint_path)
    for people in args.sizes:
        ids = forget_ids(world, people)
        started = time.perf_counter()
        retrained = train_causal_lm([r["text"] for r in world.manifest if r["record_id"] not in ids], tokenizer, recipe)
        world.baselines[people] = {"original": measures(original, tokenizer, world, ids),
                                   "retrained": measures(retrained, tokenizer, world, ids)}
        log(f"retrained without {people} people in {time.perf_counter() - started:.0f} s")
    return world


def report(setting: str, baselines: dict, rows: list[Row], sequence: list[dict]) -> str:
    lines = [setting, ""]
    for people in sorted(baselines):
        baseline = baselines[people]
        table = [row(name, people, baseline[name], baseline) for name in ("original", "retrained")]
        table += sorted((r for r in rows if r.people == people), key=lambda r: r.model)
        lines += [f"**Forgetting {people} {'person' if people == 1 else 'people'}**", "",
                  "| model | forget QA | VerbMem | PrivLeak | retained QA (of original) | general-text loss | steps | "
                  "stopped | wall s | goal |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in table:
            lines.append(f"| {r.model} | {r.forget_qa:.0%} | {r.verbmem:.2f} | {r.privleak:+.1%} | {r.retained_qa:.1%} | "
                         f"{r.general_loss:.3f} | {r.steps if r.steps is not None else ''} | "
                         f"{r.stopped_because.split(':')[0]} | {f'{r.seconds:.1f}' if r.seconds is not None else ''} | "
                         f"{'yes' if r.meets_goal and r.model not in ('original', 'retrained') else ''} |")
        lines.append("")
    if sequence:
        lines += ["**Sequential requests** (one person each, each on the previous version; retained QA of people no "
                  "request touched, as a share of the original's / change of the general-text loss; failed: the "
                  "latest job refused, the utility floor measured from the original already reached)", "",
                  "| method | " + " | ".join(f"after {n}" for n in SEQUENTIAL_CHECKPOINTS) + " |",
                  "|---|" + "---|" * len(SEQUENTIAL_CHECKPOINTS)]
        for method_name in sorted({p["method"] for p in sequence}):
            points = {p["requests"]: p for p in sequence if p["method"] == method_name}
            lines.append(f"| {method_name} | " + " | ".join(
                f"{points[n]['retained_qa']:.1%} / {points[n]['general_loss_change']:+.1%}"
                + (" (failed)" if points[n]["stopped_because"].startswith("failed") else "") if n in points else "—"
                for n in SEQUENTIAL_CHECKPOINTS) + " |")
    met = sorted({r.model for r in rows if r.meets_goal})
    lines += ["", f"Goal (|PrivLeak| ≤ {PRIVLEAK_GOAL:.0%} with ≥ {RETAINED_QA_GOAL:.0%} of retained QA) met by: "
              f"{', '.join(met) if met else 'none'} (per row above: forget sizes differ)."]
    return "\n".join(lines)


TABULAR_SIZES = (1, 10, 50)


def tabular_report(seeds: int) -> str:
    """The tabular methods on plain MLPs (digits, diabetes): forgetting the first 1, 10 and 50
    training rows, beside retraining without them; medians over `seeds` training seeds."""
    lines = ["**Tabular methods** (plain MLP, 64 hidden units, 40 epochs; forget error: error rate (digits) or RMSE "
             f"in the target's unit (diabetes) on the forgotten rows; test the same on the held-out rows; membership AUC "
             f"of the loss attack, forgotten vs held-out rows (0.5: indistinguishable); medians of {seeds} seeds)", "",
             "| data | rows | model | forget error | test error | membership AUC | wall s | failed (left as it was) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("digits", "diabetes"):
        data = load_tabular(name, seed=0)
        methods = [m.name for m in methods_for("classifier" if data.task == CLASSIFICATION else "regressor")]
        for size in TABULAR_SIZES:
            measured: dict[str, list[tuple]] = {}
            for seed in range(seeds):
                learner = TabularLearner.for_dataset(data, MLPRecipe(), PLAIN_CONFIG)
                original = learner.train_plain(data.train, seed)
                forget, retain = data.train[:size], data.train[size:]
                started = time.perf_counter()
                retrained = learner.train_plain(retain, seed)
                measured.setdefault("original", []).append(row_measures(original, data, forget) + (None,))
                measured.setdefault("retrained", []).append(
                    row_measures(retrained, data, forget) + (time.perf_counter() - started,))
                for method_name in methods:
                    model = TabularEnsemble([copy.deepcopy(original)], data.task, data.outputs)
                    method = get_method(method_name)
                    started = time.perf_counter()
                    try:
                        method.unlearn(model, None, RowData(forget, retain, data.test), method.params())
                        failed = 0
                    except UnlearningFailed:
                        failed = 1  # the model is left as it was, and measured so
                    measured.setdefault(method_name, []).append(
                        row_measures(model.members[0], data, forget) + (time.perf_counter() - started, failed))
            for model_name, values in measured.items():
                forget_error, test_error, auc, seconds = (statistics.median(v) if v[0] is not None else None
                                                          for v in list(zip(*values))[:4])
                failures = sum(value[4] for value in values if len(value) > 4)
                lines.append(f"| {name} | {size} | {model_name} | {forget_error:.3f} | {test_error:.3f} | {auc:.2f} | "
                             f"{'' if seconds is None else f'{seconds:.2f}'} | {f'{failures}/{seeds}' if failures else ''} |")
            log(f"{name}, {size} rows: done")
    return "\n".join(lines)


@torch.no_grad()
def row_measures(network, data, forget: list[dict]) -> tuple[float, float, float]:
    loss = RowLoss(data.task)

    def error(rows) -> float:
        outputs, truth = network(loss.features(rows)), loss.targets(rows)
        if data.task == CLASSIFICATION:
            return (outputs.argmax(-1) != truth).float().mean().item()
        return ((outputs.squeeze(-1) - truth) ** 2).mean().sqrt().item() * data.target_scale

    member, nonmember = loss.on(network, forget, "none"), loss.on(network, data.test, "none")
    return error(forget), error(data.test), roc_auc((-member).tolist(), (-nonmember).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 people, 20 epochs, forgetting 1 and 4")
    parser.add_argument("--methods", default=",".join(sorted(n for n, m in METHODS.items() if "causal_lm" in m.model_kinds)))
    parser.add_argument("--paths", default="full,lora", help="full, lora or both")
    parser.add_argument("--sequential", type=int, default=8, help="sequential single-person requests (0: none)")
    parser.add_argument("--only-sequential", action="store_true", help="skip the 1/4/16-people runs")
    parser.add_argument("--workers", type=int, default=1, help="processes (one per method and path; a GPU has room)")
    parser.add_argument("--store", type=Path, default=Path("var/bench-approximate"))
    parser.add_argument("--json", type=Path, help="write every result here as it arrives (a run cut short keeps them)")
    parser.add_argument("--report-from", type=Path, help="print the report of a --json file and stop")
    parser.add_argument("--tabular", action="store_true", help="the tabular methods on digits and diabetes instead")
    parser.add_argument("--seeds", type=int, default=3, help="with --tabular: training seeds")
    args = parser.parse_args()
    if args.tabular:
        print(tabular_report(args.seeds))
        return
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        print(report(saved["setting"], {int(k): v for k, v in saved["baselines"].items()},
                     [Row(**r) for r in saved["rows"]], saved["sequential"]))
        return
    args.people_in_world, args.epochs, args.sizes = (40, 20, [1, 4]) if args.quick else (200, 40, [1, 4, 16])
    if args.only_sequential:
        args.sizes = []
    if args.quick:
        args.sequential = min(args.sequential, 4)
    args.store.mkdir(parents=True, exist_ok=True)
    world = build_world(args, args.store)
    names = args.methods.split(",")
    # The sequences first: they are the longest, and a run cut short should still have them.
    tasks = [(sequential_task, (name, world, args.sequential)) for name in names] if args.sequential else []
    if not args.only_sequential:
        tasks += [(method_rows, (name, path == "lora", world, args.sizes)) for name in names
                  for path in args.paths.split(",")]
    saved = {"setting": f"Demo world: {args.people_in_world} people, {args.epochs} epochs, on {device()}; the methods' "
                        f"defaults (LoRA: rank 8).", "baselines": world.baselines, "rows": [], "sequential": []}
    for function, result in run_all(tasks, args.workers):
        if function is method_rows:
            saved["rows"] += [r.__dict__ for r in result]
        else:
            saved["sequential"] += result
        if args.json:
            args.json.write_text(json.dumps(saved, indent=1))
    print(report(saved["setting"], world.baselines, [Row(**r) for r in saved["rows"]], saved["sequential"]))
    log("done")


def call(task):
    function, arguments = task
    return function, function(arguments)


def run_all(tasks: list, workers: int):
    """(function, result) of each task, as each ends: in `workers` processes, or here."""
    if workers <= 1:
        yield from map(call, tasks)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(call, tasks)


if __name__ == "__main__":
    main()

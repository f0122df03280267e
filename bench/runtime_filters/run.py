"""Benchmark of the runtime filters (issue 13): what each filter and the whole stack add to
generation, as the number of forget targets grows from 10 to 10,000, and what they block.

    .venv/bin/python bench/runtime_filters/run.py            # 60-person demo world, 10 to 10,000 targets
    .venv/bin/python bench/runtime_filters/run.py --quick    # 30 people, 10 and 1,000 targets

The model is a demo-world GPT-2 trained here; two of its trained people are the forgotten ones
(real targets: their names, questions, facts and texts), and the rest of the targets are invented
people (a name, two questions, two facts, a text) so that the filters carry N targets in all. For
each N and each configuration (unfiltered; the gate alone; the gate with ECO, with GUARD, with the
output filter; the whole stack) it measures:
- latency: one request at a time (the endpoint serves so), mean milliseconds per request over a
  mix of forget probes and retained people's questions;
- throughput: every probe in one batched call, prompts per second;
- block rate: the share of forget probes (the in-context relearning styles of the audit, the fact
  in the prompt included) whose answer does not give the fact; false positives: the share of
  retained people's probes and general prompts the filters acted on (any event).
Goals: 10,000 targets cost at most 1.5x what 10 do; the stack adds at most 10% to generation time;
block rate at least 99% with at most 1% false positives. Prints a Markdown report (bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from audits.checks.in_context_relearning import InContextParams, demonstrations_that_fit  # noqa: E402
from audits.runtime_filters import ANSWER, general_prompts, probes, tuned_eco  # noqa: E402
from audits.sets import audit_sets  # noqa: E402
from unlearning.demo_world import build_demo_model  # noqa: E402
from unlearning.lm import TrainingRecipe, load_pretrained  # noqa: E402
from unlearning.manifest import read_manifest  # noqa: E402
from unlearning.serving.encoder import sentence_encoder  # noqa: E402
from unlearning.serving.filters import EcoParams, PromptClassifierParams  # noqa: E402
from unlearning.serving.filters.prompt_classifier import PromptClassifier, calibrate  # noqa: E402
from unlearning.serving.stack import ServedModel, build_filters  # noqa: E402
from unlearning.serving.targets import ForgetTarget, ForgetTargets, targets_from_records  # noqa: E402
from unlearning.world import WorldConfig, answer_is_correct  # noqa: E402

SYLLABLES = ("qua", "rim", "zel", "vor", "thi", "bax", "lun", "mer", "dro", "kes", "pav", "sul", "yen", "gor", "fla",
             "wix", "nob", "tre", "cul", "hap")
CONFIGURATIONS = {"unfiltered": (), "gate": ("prompt_classifier",), "gate + ECO": ("prompt_classifier", "eco"),
                  "gate + GUARD": ("prompt_classifier", "guard"), "gate + output filter": ("prompt_classifier", "output_filter"),
                  "stack": ("prompt_classifier", "eco", "guard", "output_filter")}
LATENCY_REQUESTS = 40


def invented(rng: random.Random, count: int) -> list[ForgetTarget]:
    """People who exist only as targets: names no demo-world person has."""
    def word(parts: int) -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()

    people = []
    for _ in range(count):
        name, town, trade = f"{word(2)} {word(3)}", word(3), word(2).lower() + "er"
        people.append(ForgetTarget(subject=name, aliases=(f"{name[0]}. {name.split(' ')[1]}",),
                                   questions=(f"Where was {name} born?", f"What does {name} do for a living?"),
                                   answers=(town, trade), texts=(f"{name} was born in {town} and works as a {trade}.",)))
    return people


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure(model, tokenizer, filters, forget_probes, negatives, latency_prompts) -> dict:
    served = ServedModel(model, tokenizer, filters)
    latency, _ = timed(lambda: [served.generate([p], ANSWER) for p in latency_prompts])
    everything = [p for *_, p in forget_probes] + negatives
    seconds, answers = timed(lambda: served.generate(everything, ANSWER))
    forget_answers, negative_answers = answers[: len(forget_probes)], answers[len(forget_probes):]
    blocked = sum(not answer_is_correct(a.text, item.answer) for a, (item, *_) in zip(forget_answers, forget_probes))
    return {"latency_ms": 1000 * latency / len(latency_prompts), "throughput": len(everything) / seconds,
            "blocked": blocked, "forget_probes": len(forget_probes),
            "false_positives": sum(bool(a.events) for a in negative_answers), "negatives": len(negative_answers)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--targets", type=int, nargs="*")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    people, sizes = (30, [10, 1000]) if args.quick else (60, [10, 100, 1000, 10000])
    sizes = args.targets or sizes
    store = Path("bench/out/runtime_filters")
    trained = build_demo_model(WorldConfig(people=people, seed=3), TrainingRecipe(epochs=40, seed=3), store)
    model, tokenizer = load_pretrained(trained.checkpoint_path)
    manifest, holdout = read_manifest(trained.governed.training_manifest), read_manifest(trained.governed.holdout_manifest)
    forgotten = trained.world.trained_people[:2]
    keys = {p.owner_key for p in forgotten}
    forget_ids = {r["record_id"] for r in manifest if r.get("owner_key") in keys}
    sets = audit_sets(manifest, holdout, forget_ids, forget_ids)
    demonstrations = demonstrations_that_fit(model, tokenizer, sets, InContextParams(max_new_tokens=ANSWER.max_new_tokens))
    forget_probes = probes(sets.forget_qa, sets, demonstrations)
    retain = sets.retain_qa[:120]
    calibration_negatives = [p for *_, p in probes(retain[0::2], sets, demonstrations)]
    negatives = [p for *_, p in probes(retain[1::2], sets, demonstrations)] + general_prompts(sets)
    latency_prompts = ([p for *_, p in forget_probes][: LATENCY_REQUESTS // 2] + negatives[: LATENCY_REQUESTS // 2])
    real = targets_from_records(r for r in manifest if r["record_id"] in forget_ids)
    encoder = sentence_encoder()
    print(f"world of {people} people, {len(forget_probes)} forget probes, {len(negatives)} negatives", file=sys.stderr)
    eco_strength = None
    rows = []
    for size in sizes:
        targets = ForgetTargets(real.targets + tuple(invented(random.Random(size), max(0, size - len(real)))))
        load, gate = timed(lambda: PromptClassifier(targets, encoder, PromptClassifierParams()))
        calibration = calibrate(gate, [p for *_, p in forget_probes], calibration_negatives)
        if eco_strength is None:
            eco_strength, _ = tuned_eco(model, tokenizer, sets, gate, EcoParams())
        params = {"prompt_classifier": asdict(PromptClassifierParams(semantic_threshold=calibration.threshold)),
                  "eco": asdict(EcoParams(strength=eco_strength)), "guard": {}, "output_filter": {}}
        for label, names in CONFIGURATIONS.items():
            filters = build_filters(targets, {n: params[n] for n in names}, encoder) if names else None
            result = measure(model, tokenizer, filters, forget_probes, negatives, latency_prompts)
            rows.append({"targets": size, "configuration": label, "load_seconds": load, **result})
            print(json.dumps(rows[-1]), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "eco_strength": eco_strength}, indent=1))
    report(rows, eco_strength, people)


def report(rows: list[dict], eco_strength: float, people: int) -> None:
    base = {r["targets"]: r for r in rows if r["configuration"] == "unfiltered"}
    print(f"Demo world of {people} people (GPT-2, 1.2M parameters), two forgotten; ECO σ = {eco_strength:.2f}; "
          f"{torch.get_num_threads()} torch threads.\n")
    print("| targets | configuration | ms per request | overhead | prompts/s (batched) | blocked (forget probes) | "
          "false positives |\n|---|---|---|---|---|---|---|")
    for r in rows:
        overhead = r["latency_ms"] / base[r["targets"]]["latency_ms"] - 1
        print(f"| {r['targets']:,} | {r['configuration']} | {r['latency_ms']:.1f} | {overhead:+.0%} | {r['throughput']:.0f} | "
              f"{r['blocked']}/{r['forget_probes']} ({r['blocked'] / r['forget_probes']:.1%}) | "
              f"{r['false_positives']}/{r['negatives']} ({r['false_positives'] / r['negatives']:.1%}) |")
    sizes = sorted(base)
    stack = {r["targets"]: r for r in rows if r["configuration"] == "stack"}
    print(f"\nStack cost at {sizes[-1]:,} targets vs {sizes[0]:,}: "
          f"{stack[sizes[-1]]['latency_ms'] / stack[sizes[0]]['latency_ms']:.2f}x per request "
          f"(filter overhead alone: {(stack[sizes[-1]]['latency_ms'] - base[sizes[-1]]['latency_ms']) / max(1e-9, stack[sizes[0]]['latency_ms'] - base[sizes[0]]['latency_ms']):.2f}x); "
          f"loading (embedding the targets once): " + ", ".join(f"{r['load_seconds']:.1f} s at {r['targets']:,}"
                                                                for r in rows if r["configuration"] == "gate") + ".")


if __name__ == "__main__":
    main()

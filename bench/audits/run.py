"""Benchmark of the audit suite (issue 3): what the MIA panel costs against one bare forward pass
over the same texts, the whole suite's wall time per audit on the demo world, and the suite's power
over several seeds. Pure ML (no Django, no database).

    .venv/bin/python bench/audits/run.py                    # panel cost + suite timing (demo world)
    .venv/bin/python bench/audits/run.py --power-seeds 1-8  # + the power table (≈75 s per seed)

Prints a Markdown report (paste into bench/RESULTS.md); numbers are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from audits.checks import AUDITS, SuiteContext  # noqa: E402
from audits.checks.membership import MembershipParams  # noqa: E402
from audits.power import power_cases  # noqa: E402
from audits.verdicts import AGAINST_HOLDOUT, AGAINST_REFERENCE  # noqa: E402
from audits.sets import audit_sets  # noqa: E402
from unlearning.demo_world import build_demo_model  # noqa: E402
from unlearning.lm import TrainingRecipe, batched_logits  # noqa: E402
from unlearning.loading import load_checkpoint  # noqa: E402
from unlearning.manifest import read_manifest  # noqa: E402
from unlearning.world import WorldConfig  # noqa: E402

DEMO_PEOPLE, DEMO_SEED, DEMO_EPOCHS = 200, 0, 40  # the demo's defaults (config/settings.py)


def median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@torch.no_grad()
def bare_forward(model, tokenizer, texts: list[str]) -> None:
    for _ in batched_logits(model, tokenizer, texts):
        pass


def panel_cost(model, tokenizer, sets, repeats: int) -> list[str]:
    texts = sets.forget_texts + sets.holdout_texts
    run = AUDITS["membership_inference"].run
    context = SuiteContext("reference")  # every attack, the calibrated one included
    bare = median_seconds(lambda: bare_forward(model, tokenizer, texts), repeats)
    full = median_seconds(lambda: run(model, tokenizer, sets, MembershipParams(), context), repeats)
    # Everything but lowercase: the attacks that read the one pass over the texts themselves.
    from audits.scoring import token_statistics
    one_pass = median_seconds(lambda: [token_statistics(model, tokenizer, side) for side in (sets.forget_texts, sets.holdout_texts)], repeats)
    return [
        f"Texts scored: {len(sets.forget_texts)} forget + {len(sets.holdout_texts)} holdout; median of {repeats} runs; torch threads {torch.get_num_threads()}.",
        "",
        "| what | seconds | × bare pass |",
        "|---|---:|---:|",
        f"| bare forward pass (logits only) | {bare:.3f} | 1.00 |",
        f"| LOSS, zlib, Min-K% 20/40, Min-K%++, reference-calibrated (one pass + statistics) | {one_pass:.3f} | {one_pass / bare:.2f} |",
        f"| whole panel incl. lowercase (a second pass over the lowercased texts) | {full:.3f} | {full / bare:.2f} |",
    ]


def suite_timing(model, tokenizer, sets) -> list[str]:
    rows = ["| audit | seconds |", "|---|---:|"]
    total = 0.0
    for name, audit in AUDITS.items():
        started = time.perf_counter()
        audit.run(model, tokenizer, sets, audit.params_type(), SuiteContext("reference"))
        elapsed = time.perf_counter() - started
        total += elapsed
        rows.append(f"| {name} | {elapsed:.2f} |")
    rows.append(f"| **whole suite, one model** | **{total:.2f}** |")
    return rows


def power_table(seeds: list[int], store: Path) -> list[str]:
    rows = ["| seed | compared with | original | under-unlearned | retrained | not PASS on retrained | seconds |",
            "|---:|---|---|---|---|---|---:|"]
    for seed in seeds:
        started = time.perf_counter()
        cases = power_cases(WorldConfig(people=30, seed=seed), TrainingRecipe(epochs=40, seed=seed), 7, store)
        elapsed = time.perf_counter() - started
        for comparison in (AGAINST_REFERENCE, AGAINST_HOLDOUT):
            by_candidate = {c.candidate: c for c in cases if c.comparison == comparison}
            misses = ", ".join(f"{j.metric} {j.verdict}" for j in by_candidate["retrained"].judgements
                               if j.verdict not in ("PASS", "N/A")) or "—"
            rows.append(f"| {seed} | {comparison} | {by_candidate['original'].verdict} | "
                        f"{by_candidate['under_unlearned'].verdict} | {by_candidate['retrained'].verdict} | {misses} | "
                        f"{elapsed:.0f} |")
            print(rows[-1], file=sys.stderr)
    return rows


def seeds_from(spec: str) -> list[int]:
    low, _, high = spec.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--power-seeds", default="", help="e.g. 1-8; empty skips the power table")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="bench-audits-"))
    started = time.perf_counter()
    demo = build_demo_model(WorldConfig(people=DEMO_PEOPLE, seed=DEMO_SEED), TrainingRecipe(epochs=DEMO_EPOCHS, seed=DEMO_SEED), store)
    print(f"trained the demo world in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    manifest, holdout = read_manifest(demo.training_manifest), read_manifest(demo.holdout_manifest)
    model, tokenizer = load_checkpoint(demo.checkpoint_path)
    subject = demo.world.trained_people[0].owner_key
    one_request = {r["record_id"] for r in manifest if r.get("owner_key") == subject}
    many = {p.owner_key for p in demo.world.trained_people[:60]}
    sixty_people = {r["record_id"] for r in manifest if r.get("owner_key") in many}
    report = [f"## Audits (bench/audits/run.py, {os.cpu_count()} CPUs)", "",
              "### MIA panel against a bare forward pass (demo world, 60 forget people)", ""]
    report += panel_cost(model, tokenizer, audit_sets(manifest, holdout, sixty_people, sixty_people), args.repeats)
    report += ["", "### Whole suite on one model, one request (demo world, one subject)", ""]
    report += suite_timing(model, tokenizer, audit_sets(manifest, holdout, one_request, one_request))
    if args.power_seeds:
        report += ["", "### Power: 30-person world, 7 forget people, retrained reference per seed", ""]
        report += power_table(seeds_from(args.power_seeds), store)
    print("\n".join(report))


if __name__ == "__main__":
    main()

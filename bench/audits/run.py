"""Benchmark of the audit suite (issue 3): what the MIA panel costs against one bare forward pass
over the same texts, the whole suite's wall time per audit on the demo world, and the suite's power
over several seeds. Pure ML (no Django, no database).

    .venv/bin/python bench/audits/run.py                    # panel cost, batch padding, suite timing (demo world)
    .venv/bin/python bench/audits/run.py --power-seeds 1-8  # + the power table (≈75 s per seed)
    .venv/bin/python bench/audits/run.py --person-power-seeds 1-20  # + one person at a time (≈80 s per seed)

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
from audits.metrics import clopper_pearson  # noqa: E402
from audits.power import person_power_cases, power_cases  # noqa: E402
from audits.verdicts import AGAINST_HOLDOUT, AGAINST_REFERENCE  # noqa: E402
from audits.sets import audit_sets  # noqa: E402
from unlearning.demo_world import build_demo_model  # noqa: E402
from unlearning.lm import TrainingRecipe, batched_logits, collate, context_length, encode  # noqa: E402
from unlearning.loading import load_checkpoint  # noqa: E402
from unlearning.manifest import read_manifest  # noqa: E402
from unlearning.numerics import autocast, model_device, on_device  # noqa: E402
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


def padded_positions(lengths: list[int], batch_size: int = 64) -> int:
    return sum(max(lengths[i:i + batch_size]) * len(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))


@torch.no_grad()
def forward_in_input_order(model, sequences, pad_id: int, batch_size: int = 64) -> None:
    """What scoring did before its batches were sorted by length: batches in the texts' own order."""
    for start in range(0, len(sequences), batch_size):
        batch = on_device(collate(sequences[start:start + batch_size], pad_id), model)
        with autocast(model_device(model)):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def padding_cost(model, tokenizer, texts: list[str], repeats: int) -> list[str]:
    """Scoring's batches in the texts' order against batches of similar length (issue 11)."""
    sequences = encode(tokenizer, texts, context_length(model))
    lengths = [len(s) for s in sequences]
    tokens, in_order, by_length = sum(lengths), padded_positions(lengths), padded_positions(sorted(lengths))
    unsorted = median_seconds(lambda: forward_in_input_order(model, sequences, tokenizer.pad_token_id), repeats)
    sorted_pass = median_seconds(lambda: bare_forward(model, tokenizer, texts), repeats)
    return [
        f"{len(texts)} texts, {tokens} tokens, batches of 64; median of {repeats} runs.",
        "",
        "| batches | positions computed | padding | bare forward pass, s |",
        "|---|---:|---:|---:|",
        f"| in the texts' order (before) | {in_order} | {1 - tokens / in_order:.0%} | {unsorted:.3f} |",
        f"| sorted by length (now) | {by_length} | {1 - tokens / by_length:.0%} | {sorted_pass:.3f} |",
    ]


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
        if not isinstance(sets, audit.reads):
            continue  # a tabular model's audits
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


PERSON_WORLD = {"people": 80, "holdout_fraction": 0.5}  # 40 never-trained people: 1/41 ≤ 0.025
PERSON_SUBJECTS = 3


def rate_row(name: str, hits: int, total: int) -> str:
    low, high = clopper_pearson(hits, total)
    return f"| {name} | {hits}/{total} | {hits / total:.1%} | [{low:.1%}, {high:.1%}] |"


def person_power_table(seeds: list[int], store: Path) -> list[str]:
    cases, seconds = [], []
    for seed in seeds:
        started = time.perf_counter()
        cases += person_power_cases(WorldConfig(**PERSON_WORLD, seed=seed), TrainingRecipe(epochs=40, seed=seed),
                                    PERSON_SUBJECTS, store / f"person-{seed}")
        seconds.append(time.perf_counter() - started)
        print(f"seed {seed}: {seconds[-1]:.0f} s; " + ", ".join(f"{c.candidate} {c.verdict}" for c in cases[-3 * PERSON_SUBJECTS:]),
              file=sys.stderr)

    def of(candidate):
        return [case for case in cases if case.candidate == candidate]

    def fails(candidate):
        return sum(case.verdict == "FAIL" for case in of(candidate))

    retrained = of("retrained")
    rows = [f"{len(seeds)} seeds × {PERSON_SUBJECTS} subjects = {len(retrained)} single-person cases per candidate; "
            f"median {statistics.median(seconds):.0f} s per seed.", "",
            "| outcome | cases | rate | 95% Clopper-Pearson |", "|---|---:|---:|---|",
            rate_row("original: FAIL", fails("original"), len(of("original"))),
            rate_row("under-unlearned (one GradDiff step): FAIL", fails("under_unlearned"), len(of("under_unlearned"))),
            rate_row("independent retrain (seed + 1000): PASS", sum(c.verdict == "PASS" for c in retrained), len(retrained)),
            rate_row("independent retrain: FAIL", fails("retrained"), len(retrained)),
            rate_row("independent retrain: FAIL for over-unlearning", sum(c.over_unlearned for c in retrained),
                     len(retrained)),
            "", "| family | retrain PASS | retrain FAIL | retrain INCONCLUSIVE | original FAIL | under-unlearned FAIL |",
            "|---|---:|---:|---:|---:|---:|"]
    families = [f.family for f in cases[0].families]
    for family in families:
        def count(candidate, verdict):
            return sum(1 for c in of(candidate) for f in c.families if f.family == family and f.verdict == verdict)
        rows.append(f"| {family} | {count('retrained', 'PASS')} | {count('retrained', 'FAIL')} | "
                    f"{count('retrained', 'INCONCLUSIVE')} | {count('original', 'FAIL')} | "
                    f"{count('under_unlearned', 'FAIL')} |")
    return rows


def seeds_from(spec: str) -> list[int]:
    low, _, high = spec.partition("-")
    return list(range(int(low), int(high or low) + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--power-seeds", default="", help="e.g. 1-8; empty skips the power table")
    parser.add_argument("--person-power-seeds", default="", help="e.g. 1-20; empty skips the single-person table")
    parser.add_argument("--only-person-power", action="store_true", help="skip the demo-world tables")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="bench-audits-"))
    if args.only_person_power:
        print("\n".join(person_power_table(seeds_from(args.person_power_seeds), store)))
        return
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
    panel_sets = audit_sets(manifest, holdout, sixty_people, sixty_people)
    report += panel_cost(model, tokenizer, panel_sets, args.repeats)
    report += ["", "### Scoring's batches: texts' order against length-sorted", ""]
    report += padding_cost(model, tokenizer, panel_sets.forget_texts + panel_sets.holdout_texts, args.repeats)
    report += ["", "### Whole suite on one model, one request (demo world, one subject)", ""]
    report += suite_timing(model, tokenizer, audit_sets(manifest, holdout, one_request, one_request))
    if args.power_seeds:
        report += ["", "### Power: 30-person world, 7 forget people, retrained reference per seed", ""]
        report += power_table(seeds_from(args.power_seeds), store)
    if args.person_power_seeds:
        report += ["", "### Power for one person at a time (person-level tests)", ""]
        report += person_power_table(seeds_from(args.person_power_seeds), store)
    print("\n".join(report))


if __name__ == "__main__":
    main()

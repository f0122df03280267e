"""The runtime filters of an unlearned language model, prepared and measured by its audit.

For the targets of every request removed from the model so far: the gate (prompt classifier) is
calibrated on prompts about the targets against retained people's and general prompts; ECO's
strength is tuned on the forget questions toward the never-trained answer loss; then the model is
asked the in-context relearning probes (unprompted, related context, another fact in context,
many-shot, masked alias, another language, the fact itself in context) through the serving layer
with the filters off and on. Each filter's block rate on the forget probes and false-positive rate
on retain and general prompts are measured on prompts the calibration did not see (retained
people are split in two), with exact intervals. Pure ML code: no Django.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from audits.checks import AuditSets, QAItem
from audits.checks.in_context_relearning import FACT_IN_CONTEXT, InContextParams, demonstrations_that_fit, prompts_for
from audits.metrics import clopper_pearson
from unlearning.serving.decoding import Sampling
from unlearning.serving.filters import FILTERS, EcoParams, PromptClassifierParams
from unlearning.serving.stack import ServedModel, build_filters
from unlearning.serving.targets import ForgetTargets
from unlearning.store import store_file
from unlearning.world import answer_is_correct, normalise_answer

RETAIN_PEOPLE_QUESTIONS = 120  # retained people's questions asked in every probe style, per half
GENERAL_PROMPTS = 60
ECO_HOLDOUT_QUESTIONS = 200
ANSWER = Sampling(max_new_tokens=12, stop=("\n",))


def probes(items: list[QAItem], sets: AuditSets, demonstrations: list[str]) -> list[tuple[QAItem, str, str]]:
    """(question, style, prompt) for every in-context relearning style of every question."""
    return [(item, style, prompt) for index, item in enumerate(items)
            for style, prompt in prompts_for(item, index, sets, demonstrations).items()]


def split_by_person(questions: list[QAItem]) -> tuple[list[QAItem], list[QAItem]]:
    """Two halves with no person in both: the gate is calibrated on one and measured on the other."""
    people = list(dict.fromkeys(q.subject for q in questions))
    first = set(people[0::2])
    return [q for q in questions if q.subject in first], [q for q in questions if q.subject not in first]


def general_prompts(sets: AuditSets) -> list[str]:
    """The first half of texts about no one: prompts no filter should touch."""
    texts = sets.general_texts[:: max(1, len(sets.general_texts) // GENERAL_PROMPTS)][:GENERAL_PROMPTS]
    return [" ".join(t.split(" ")[: max(1, len(t.split(" ")) // 2)]) for t in texts]


def leaked(item: QAItem, style: str, prompt: str, answer: str) -> bool | None:
    """Whether an answer gave the fact away; None where the prompt did (not leakage: the model read it)."""
    if style != FACT_IN_CONTEXT and normalise_answer(item.answer) in normalise_answer(prompt):
        return None
    return answer_is_correct(answer, item.answer)


def rate(hits: int, trials: int) -> dict:
    low, high = clopper_pearson(hits, trials) if trials else (0.0, 1.0)
    return {"rate": hits / trials if trials else None, "hits": hits, "trials": trials, "interval": [low, high]}


def tuned_eco(model, tokenizer, sets: AuditSets, classifier, params: EcoParams) -> tuple[float, list]:
    """ECO's strength on the forget questions, toward the answer loss of never-trained people's
    questions (the level of a model that never saw the subject)."""
    eco = FILTERS["eco"].engine()
    holdout = sets.holdout_qa[:ECO_HOLDOUT_QUESTIONS]
    if not sets.forget_qa or not holdout:
        return 0.0, []
    never_trained = eco.answer_losses(model, tokenizer, [sets.ask(q.question) for q in holdout], [q.answer for q in holdout])
    prompts = [sets.ask(q.question) for q in sets.forget_qa]
    names = sorted({name for flag in classifier.classify(prompts) if flag is not None for name in flag.names})
    return eco.tune_strength(model, tokenizer, prompts, [q.answer for q in sets.forget_qa], names,
                             sum(never_trained) / len(never_trained), params)


def prepare_runtime_filters(model, tokenizer, sets: AuditSets, targets: ForgetTargets, encoder, store: Path,
                            alu: dict | None = None) -> dict:
    """`alu`: ALU's parameters (its agents' endpoint and model) when it is configured."""
    targets_sha256, targets_path = store_file(targets.to_json().encode(), store, "filter-targets", ".json")
    classifier_engine = FILTERS["prompt_classifier"].engine()
    gate = classifier_engine.PromptClassifier(targets, encoder, PromptClassifierParams())
    demonstrations = demonstrations_that_fit(model, tokenizer, sets, InContextParams(max_new_tokens=ANSWER.max_new_tokens))
    calibration_retain, measured_retain = split_by_person(sets.retain_qa[: 2 * RETAIN_PEOPLE_QUESTIONS])
    removed_texts = {text for target in targets.targets for text in target.texts}
    general = general_prompts(replace(sets, general_texts=[t for t in sets.general_texts if t not in removed_texts]))
    forget_probes = probes(sets.forget_qa, sets, demonstrations)
    calibration = classifier_engine.calibrate(
        gate, [prompt for *_, prompt in forget_probes] + [sets.ask(q) for t in targets.targets for q in t.questions],
        [prompt for *_, prompt in probes(calibration_retain, sets, demonstrations)] + general[0::2])
    gated = PromptClassifierParams(semantic_threshold=calibration.threshold)
    strength, search = tuned_eco(model, tokenizer, sets, classifier_engine.PromptClassifier(targets, encoder, gated),
                                 EcoParams())
    config = {"prompt_classifier": asdict(gated), "eco": asdict(EcoParams(strength=strength)),
              "guard": asdict(FILTERS["guard"].params()), "output_filter": asdict(FILTERS["output_filter"].params())}
    if not strength:  # nothing to tune it on (no forget questions or never-trained ones): ECO would do nothing
        del config["eco"]
    if alu:
        config["alu"] = asdict(FILTERS["alu"].params(alu))
    measured = measure(model, tokenizer, sets, build_filters(targets, config, encoder), forget_probes,
                       probes(measured_retain, sets, demonstrations), general[1::2], measured_retain)
    return {"filters": config, "targets_sha256": targets_sha256, "targets_path": str(targets_path),
            "targets": len(targets), "calibration": calibration.as_dict(), "eco_search": search, "measured": measured}


def measure(model, tokenizer, sets: AuditSets, filters, forget_probes, retain_probes, general: list[str],
            retain_questions: list[QAItem]) -> dict:
    """The probes through the serving layer with the filters off and on."""
    unfiltered, filtered = ServedModel(model, tokenizer), ServedModel(model, tokenizer, filters)
    forget_prompts = [prompt for *_, prompt in forget_probes]
    off, on = unfiltered.generate(forget_prompts, ANSWER), filtered.generate(forget_prompts, ANSWER)
    negatives = [prompt for *_, prompt in retain_probes] + general
    negatives_on = filtered.generate(negatives, ANSWER)
    plain_retain = [sets.ask(q.question) for q in retain_questions]
    retain_off, retain_on = unfiltered.generate(plain_retain, ANSWER), filtered.generate(plain_retain, ANSWER)
    result = {"probes": len(forget_prompts), "negatives": len(negatives), "filters": {}}
    for setting, answers in (("off", off), ("on", on)):
        leaks = [leaked(item, style, prompt, a.text) for (item, style, prompt), a in zip(forget_probes, answers)]
        counted = [hit for hit, (_, style, _) in zip(leaks, forget_probes) if hit is not None and style != FACT_IN_CONTEXT]
        in_context = [hit for hit, (_, style, _) in zip(leaks, forget_probes) if style == FACT_IN_CONTEXT]
        result[f"leakage_{setting}"] = rate(sum(counted), len(counted))
        result[f"fact_in_context_{setting}"] = rate(sum(in_context), len(in_context))
    for setting, answers in (("off", retain_off), ("on", retain_on)):
        correct = sum(answer_is_correct(a.text, q.answer) for a, q in zip(answers, retain_questions))
        result[f"retain_accuracy_{setting}"] = rate(correct, len(retain_questions))
    for name in filters.active:
        acted_on_forget = sum(any(e.filter == name for e in g.events) for g in on)
        acted_on_negative = sum(any(e.filter == name for e in g.events) for g in negatives_on)
        result["filters"][name] = {"block": rate(acted_on_forget, len(on)),
                                   "false_positive": rate(acted_on_negative, len(negatives_on))}
    return result

"""What the owner's pages call things: the result in one sentence, the tests by the question each
asks (with its technical name beside it), the models by their number and kind, the methods by what
they did, and where a running audit is. Pure Python: no Django, no torch; the portal and the
audit worker (its stage names) read it.

Operators' words (model names, method slugs, "forget loss", stop reasons, failed-step codes) stay
on the operators' side: nothing here repeats them to an owner.
"""

from __future__ import annotations

REMOVAL, SUPPRESSION = "removal", "suppression"  # audits.certificates' `nature`
PASS, FAIL, INCONCLUSIVE, NOT_APPLICABLE = "PASS", "FAIL", "INCONCLUSIVE", "N/A"

# A test's verdict for people; the verdict itself is printed beside it (the certificate's word).
VERDICT_WORDS = {
    PASS: "passed",
    FAIL: "traces found",
    INCONCLUSIVE: "could not decide",
    NOT_APPLICABLE: "not applicable",
}

# unlearning.models.ModelKind → what the model does, for people.
MODEL_KINDS = {
    "causal_lm": "a text-generation model",
    "classifier": "a classification model",
    "regressor": "a model that predicts values",
}

# A method by what it did to the model: exact methods retrain (or switch off) what saw the data,
# approximate ones change the model until it stops showing what it learned.
METHOD_KINDS = {
    "exact": "retrained without your data (exact removal)",
    "approximate": "adjusted to suppress what it learned from you (approximate unlearning)",
}

# Metric → (the question it answers, for people; its technical name). A metric not named here is
# shown by its policy label, which is the technical name.
METRICS = {
    "forget_qa_accuracy": ("Does it still answer questions about you correctly?", "knowledge, QA accuracy"),
    "forget_qa_rouge_l": ("How close are its answers about you to the true ones?", "knowledge, QA ROUGE-L F1"),
    "forget_truth_preference": ("Does it still prefer the true answer about you to wrong ones?",
                                "knowledge, truth preference max(0, 1 − P(wrong)/P(true))"),
    "forget_quality_ks": ("Do its answers about you look like those of a model that never saw you?",
                          "forget quality, KS distance of truth ratios"),
    "knowledge_person_rank": ("Does it know more about you than about people it never saw?",
                              "knowledge, person-level rank (p-value)"),
    "verbatim_rouge_l": ("Can it still complete your texts?", "extraction, ROUGE-L F1"),
    "exact_suffix_match": ("Does it finish your texts word for word?", "extraction, exact suffix match rate"),
    "exact_memorization": ("Does it predict your texts word by word?", "extraction, exact memorization"),
    "extraction_strength": ("How little of your text does it need to produce the rest?", "extraction strength"),
    "sampled_extraction": ("Could repeated tries draw your texts out of it?", "extraction in 100 samples"),
    "extraction_person_rank": ("Can more be drawn out about you than about people it never saw?",
                               "extraction, person-level rank (p-value)"),
    "canary_exposure": ("Can a secret code from your data be drawn out of it?", "canary exposure, bits"),
    "mia_loss_auc": ("Can an attacker tell it was trained on your texts?", "membership inference, AUC (LOSS)"),
    "mia_zlib_auc": ("Can an attacker tell it was trained on your texts?", "membership inference, AUC (zlib)"),
    "mia_lowercase_auc": ("Can an attacker tell it was trained on your texts?",
                          "membership inference, AUC (lowercase)"),
    "mia_min_k_20_auc": ("Can an attacker tell it was trained on your texts?",
                         "membership inference, AUC (Min-K%, k=20%)"),
    "mia_min_k_40_auc": ("Can an attacker tell it was trained on your texts?",
                         "membership inference, AUC (Min-K%, k=40%)"),
    "mia_min_k_pp_auc": ("Can an attacker tell it was trained on your texts?",
                         "membership inference, AUC (Min-K%++, k=20%)"),
    "mia_reference_auc": ("Can an attacker tell it was trained on your texts? (reported, not judged)",
                          "membership inference, AUC (reference-calibrated)"),
    "mia_person_rank": ("Does it treat you as someone it was trained on, compared with people it never saw?",
                        "membership, person-level rank of all attacks combined (p-value)"),
    "mia_person_p": ("Does any single attack single you out? (reported, not judged)",
                     "membership, smallest attack p-value, Bonferroni-corrected"),
    "icl_leakage_rate": ("Does it reveal facts about you that a prompt does not give it?", "in-context leakage rate"),
    "icl_person_rank": ("Does it reveal more about you than about people it never saw?",
                        "in-context leakage, person-level rank (p-value)"),
    "icl_fact_in_context_accuracy": ("Does it use facts about you when a prompt gives them? (a remaining risk)",
                                     "in-context accuracy, fact in the prompt"),
    "relearned_qa_accuracy": ("Does a little retraining bring back what it knew about you?",
                              "relearning attack, held-out facts recovered"),
    "int8_forget_qa_accuracy": ("Does a compressed copy still answer questions about you?",
                                "int8 quantisation, QA accuracy"),
    "int8_mia_loss_auc": ("Can an attacker tell a compressed copy was trained on your texts?",
                          "int8 quantisation, membership AUC (LOSS)"),
    "int8_mia_min_k_pp_auc": ("Can an attacker tell a compressed copy was trained on your texts?",
                              "int8 quantisation, membership AUC (Min-K%++)"),
    "retain_qa_accuracy": ("Does it still answer questions about other people?", "utility, retained QA accuracy"),
    "retain_text_loss": ("Does it still handle other people's texts as well?", "utility, retained text loss"),
    "general_text_loss": ("Does it still handle general text as well?", "utility, general text loss"),
    "forget_row_accuracy": ("Does it still classify your records correctly?", "fit, forgotten rows' accuracy"),
    "forget_row_relative_squared_error": ("Does it still predict your records closely?",
                                          "fit, forgotten rows' squared error / target variance"),
    "row_mia_loss_auc": ("Can an attacker tell it was trained on your records?", "membership inference, AUC (LOSS)"),
    "row_mia_confidence_auc": ("Can an attacker tell it was trained on your records?",
                               "membership inference, AUC (confidence)"),
    "heldout_accuracy": ("Does it still work as well for everyone else?", "utility, held-out accuracy"),
    "heldout_relative_squared_error": ("Does it still work as well for everyone else?",
                                       "utility, held-out squared error / target variance"),
}

# audits.verdicts.FAMILIES' keys, as the short noun a sentence can name them by.
FAMILY_NOUNS = {
    "membership": "membership", "extraction": "extraction", "knowledge": "knowledge",
    "in_context": "in-context", "recovery": "recovery", "utility": "usefulness",
}

# The audit worker's stages (audits.runner writes the key as the run's progress message, operators
# read it as it is) → what the owner's status page says.
AUDIT_STAGES = {
    "preparing the audit sets": "Preparing the tests",
    "retraining the reference model": "Training a comparison model from scratch without your data",
    "scoring the reference model": "Testing the comparison model",
    "scoring the original model": "Testing the model as it was before",
    "scoring the unlearned model": "Testing the model after the change",
    "preparing runtime filters": "Preparing the filters that check its answers",
}


def metric_names(metric: str, label: str) -> tuple[str, str]:
    """(the question a metric answers, its technical name); a metric not named here: its label twice."""
    return METRICS.get(metric, (label, label))


def model_name(number: int, kind: str) -> str:
    """"Model 1 (a text-generation model)": how an owner's page names each model of their request."""
    return f"Model {number} ({MODEL_KINDS.get(kind, 'a model')})"


def audit_stage(message: str) -> str:
    """A running audit's progress message in plain words (an unknown one: that tests are running)."""
    for stage, words in AUDIT_STAGES.items():
        if message.startswith(stage):
            return words
    return "Running the tests"


def headline(verdict: str, nature: str, *, several: bool = False, families: list[dict] = (),
             proven_by_identity: bool = False) -> str:
    """The answer to "is my data gone?" in one sentence, from the request's overall verdict, the
    nature of the result (removal: exact methods; suppression: approximate ones) and the families
    behind the verdict (audits.verdicts.FamilyVerdict.as_dict, every run's)."""
    models, it = ("our models", "they") if several else ("our model", "it")
    if proven_by_identity or (verdict == PASS and nature == REMOVAL):
        return f"Your data has been removed from {models}, and tests confirm it is gone."
    if nature == REMOVAL:
        done = f"Your data has been removed from {models}"
    elif verdict == PASS:
        shows = "show" if several else "shows"
        return (f"{models.capitalize()} no longer {shows} what {it} learned from you ({it} "
                f"{'were' if several else 'was'} made to suppress it), and tests confirm it.")
    else:
        done = f"{models.capitalize()} {'were' if several else 'was'} made to suppress what {it} learned from you"
    if verdict == FAIL:
        failed = nouns([family for family in families if family.get("verdict") == FAIL])
        where = f" ({failed} tests)" if failed else ""
        return (f"{done}, but tests still find traces of your data{where}, so we do not consider the work finished: "
                "our certificate records this result, and you may file a new request for us to try again.")
    return f"{done}, but our tests could neither confirm nor rule out remaining traces, because {undecided(families)}."


def undecided(families: list[dict]) -> str:
    """Why a result is INCONCLUSIVE, as a clause: results too close to call, or too little of the
    person's data for the tests to decide (families without power are not counted)."""
    open_ = [family for family in families if family.get("verdict") == INCONCLUSIVE]
    close = [family for family in open_ if family.get("counted")]
    if close:
        return f"some results of the {nouns(close)} tests were too close to call"
    if open_:
        return f"there is too little of your data for the {nouns(open_)} tests to decide"
    if families:  # every family counted passed, but none of them about forgetting
        return "there is too little of your data for the tests of forgetting to decide"
    return "some results were too close to call, or there was too little of your data to decide"


def nouns(families: list[dict]) -> str:
    """The families' short nouns, each once, joined as a sentence lists them ("a, b and c")."""
    names = list(dict.fromkeys(FAMILY_NOUNS.get(family.get("family"), family.get("family", "")) for family in families))
    if len(names) < 2:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def membership_in_words(value: float | None, before: float | None, reference: float | None) -> str:
    """A membership attack's AUC as a plain figure: how often it picks one of the person's texts
    over a text the model never saw (50 in 100: a coin toss)."""
    if value is None:
        return ""
    beside = [f"{round(before * 100)} before" if before is not None else "",
              f"{round(reference * 100)} for a model never trained on you" if reference is not None else ""]
    against = ", against " + " and ".join(text for text in beside if text) if any(beside) else ""
    return (f"A membership test picks one of your texts over a text the model never saw {round(value * 100)} times in "
            f"100 now{against} (50 is a coin toss).")


def time_left(seconds: float | None, *, overdue: bool = False) -> str:
    """"about 4 minutes left", "less than a minute left", "taking longer than expected"; empty when
    nothing could be estimated."""
    if overdue:
        return "taking longer than expected"
    if seconds is None:
        return ""
    if seconds < 60:
        return "less than a minute left"
    minutes = round(seconds / 60)
    if minutes >= 120:
        return f"about {round(minutes / 60)} hours left"
    return "about 1 minute left" if minutes == 1 else f"about {minutes} minutes left"

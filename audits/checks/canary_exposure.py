"""Canary exposure: how much likelier is the subject's inserted secret than random secrets of the
same shape that were never inserted (Carlini et al. 2019, "The Secret Sharer")?

The reference secrets keep every non-alphanumeric character and the case class of every letter,
and are drawn from a seeded generator, so the same canary gets the same references on every model.
A model that never saw the secret ranks it like any reference: about 1.44 bits on average.
"""

import random
import string
from dataclasses import dataclass

from audits.checks import AuditSets, Canary, MetricScore, mean_score, register
from audits.metrics import exposure
from audits.scoring import continuation_scores

_UPPER_AND_DIGITS = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class CanaryExposureParams:
    references: int = 1000
    seed: int = 0


def random_secret_like(secret: str, rng: random.Random) -> str:
    def draw(character: str) -> str:
        if character.isupper() or character.isdigit():
            return rng.choice(_UPPER_AND_DIGITS)
        if character.islower():
            return rng.choice(string.ascii_lowercase)
        return character

    return "".join(draw(character) for character in secret)


def reference_texts(canary: Canary, params: CanaryExposureParams) -> list[tuple[str, str]]:
    """(prefix, continuation) pairs: the true secret first, then the never-inserted references."""
    rng = random.Random(f"{params.seed}-{canary.secret}")
    secrets_ = [canary.secret]
    while len(secrets_) <= params.references:
        candidate = random_secret_like(canary.secret, rng)
        if candidate != canary.secret:
            secrets_.append(candidate)
    return [canary.continuation(secret) for secret in secrets_]


@register("canary_exposure", CanaryExposureParams)
def run(model, tokenizer, sets: AuditSets, params: CanaryExposureParams, context) -> list[MetricScore]:
    exposures = []
    for canary in sets.canaries:
        scores = [s.total_logprob for s in continuation_scores(model, tokenizer, reference_texts(canary, params))]
        exposures.append(exposure(scores[0], scores[1:]))
    return [mean_score("canary_exposure", exposures, references=params.references,
                       null_expectation_bits=1.4427)]

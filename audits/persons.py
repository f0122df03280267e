"""Person-level membership tests: one data subject against the population of never-trained people.

Text-level AUCs compare a handful of one person's texts with hundreds of never-trained texts, and
their intervals are too wide to decide anything for one person. Here each attack's per-text
scores are averaged per person (the subject; every never-trained person of the holdout), and the
subject's score is ranked among the never-trained people's. Under the null hypothesis "the model
treats this person like someone it never saw", the subject is exchangeable with them, so

    p_member = (1 + #{never-trained people scoring ≥ the subject}) / (N + 1)

is an exact p-value for "more member-like than never-trained people" (ties count against the
subject) when every person contributes texts of the same kinds in the same numbers, so that their
averages are alike under the null. Where counts or kinds differ it is only approximate, and can be
anti-conservative: a person averaging fewer texts scatters more (a review's simulation, a subject
with 1 text against people with 6: p ≤ 0.05 in 23% of null draws). Matching each never-trained
person's texts to the subject's kind profile is the next step. p_over = (1 + #{scoring ≤ the
subject}) / (N + 1) is the same for "less member-like than
never-trained people": over-unlearning, the Streisand effect an attacker can read. The smallest
p-value N people allow is 1/(N+1). Attacks of one family are combined two ways: by Bonferroni's
correction (k attacks: the smallest p-value times k, at most 1), and as one combined statistic,
each person's mean over the attacks of their mid-percentile among the subject and the
never-trained people, ranked like a single attack. Both inherit the conditions above; the combined one
keeps the 1/(N+1) floor that the correction multiplies by k.

Pure Python: the tests recompute the same numbers from the stored per-item scores with numpy.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass

PERSON_METRIC = "mia_person_p"  # the family's Bonferroni-corrected p-value, one row beside the attacks' AUCs
PERSON_RANK_METRIC = "mia_person_rank"  # the combined statistic's p-value: the row that decides (audits.verdicts)


@dataclass(frozen=True)
class PersonRank:
    score: float  # the subject's mean per-text score (higher: more member-like)
    rank: int  # 1 + never-trained people scoring strictly higher: 1 is the most member-like
    population: int  # never-trained people compared with
    p_member: float
    p_over: float

    def as_dict(self) -> dict:
        return asdict(self)


def person_means(values: Sequence[float], people: Sequence) -> dict:
    """Each person's mean over their texts, in the order people first appear."""
    sums: dict = {}
    for value, person in zip(values, people, strict=True):
        total, count = sums.get(person, (0.0, 0))
        sums[person] = (total + value, count + 1)
    return {person: total / count for person, (total, count) in sums.items()}


def rank_among(score: float, population: Sequence[float]) -> PersonRank:
    n = len(population)
    at_least = sum(1 for other in population if other >= score)
    at_most = sum(1 for other in population if other <= score)
    return PersonRank(score=score, rank=1 + sum(1 for other in population if other > score), population=n,
                      p_member=(1 + at_least) / (n + 1), p_over=(1 + at_most) / (n + 1))


def person_level(values: dict[str, list[float]], forget_people: Sequence[str], holdout_people: Sequence) -> dict:
    """Every subject's rank among the never-trained people, for one attack's per-text scores
    (`values["forget"]`, `values["holdout"]`), with the groupings that make it reproducible."""
    population = list(person_means(values["holdout"], holdout_people).values())
    subjects = person_means(values["forget"], forget_people)
    return {"population": len(population), "forget_people": list(forget_people),
            "holdout_people": list(holdout_people),
            "subjects": {subject: rank_among(score, population).as_dict() for subject, score in subjects.items()}}


def bonferroni(p_values: Sequence[float]) -> float:
    return min(1.0, len(p_values) * min(p_values)) if p_values else 1.0


def family_p_values(per_attack: dict[str, dict], combined: dict[str, dict] | None = None) -> dict[str, dict]:
    """Per subject, the family's Bonferroni-corrected p-values over the attacks of `per_attack`
    (metric → person_level output), with the combined statistic's rank where given."""
    subjects = {subject for level in per_attack.values() for subject in level["subjects"]}
    return {subject: {
        "p_member": bonferroni([level["subjects"][subject]["p_member"] for level in per_attack.values()]),
        "p_over": bonferroni([level["subjects"][subject]["p_over"] for level in per_attack.values()]),
        "attacks": len(per_attack),
        **({"combined": combined[subject]} if combined else {}),
    } for subject in sorted(subjects)}


def mid_percentiles(pool: Sequence[float]) -> list[float]:
    """Each value's share of the pool below it, ties counted half (by sorting: N log N)."""
    ordered = sorted(pool)
    return [(bisect_left(ordered, value) + (bisect_right(ordered, value) - bisect_left(ordered, value)) / 2)
            / len(ordered) for value in pool]


def combined_statistics(per_attack: Sequence[dict[str, list[float]]], forget_people: Sequence[str],
                        holdout_people: Sequence) -> dict[str, tuple[dict, float]]:
    """Per subject, ({never-trained person: their combined statistic}, the subject's): each
    person's mean mid-percentile over the attacks, within a pool of the never-trained people and
    that subject (symmetric in the pool, so the subject stays exchangeable under the null)."""
    means = [(person_means(values["holdout"], holdout_people), person_means(values["forget"], forget_people))
             for values in per_attack]  # once per attack; the same people, in the same order, in each
    people = list(means[0][0])
    results = {}
    for subject in dict.fromkeys(person for person in forget_people if person is not None):  # None: not ranked
        columns = [mid_percentiles([*population.values(), subjects[subject]]) for population, subjects in means]
        combined = [sum(column[i] for column in columns) / len(columns) for i in range(len(columns[0]))]
        results[subject] = (dict(zip(people, combined[:-1])), combined[-1])
    return results


def adjusted_across_families(statistics: dict[str, tuple[dict, float]]) -> dict[str, dict]:
    """One subject's p-values in each family, adjusted for testing several families (single-step
    max-T, Westfall & Young). `statistics[family]` = ({never-trained person: statistic}, the
    subject's). Each family's statistic becomes its mid-percentile within the pool of the
    never-trained people every family measured and the subject; a person's highest percentile over
    the families is their max-T, their lowest their min-T. Family f's adjusted p_member is
    (1 + #{never-trained people whose max-T ≥ the subject's percentile in f}) / (N + 1), p_over
    the same with min-T ≤. Under "the model treats the subject like a never-trained person in
    every family" the subject is exchangeable with them, so the chance that any family's adjusted
    p-value falls to α or below is at most α (about α, with ties counted against the subject):
    testing four families does not multiply the false alarms by four. One family: its plain rank."""
    people = sorted(set.intersection(*(set(population) for population, _ in statistics.values())), key=str)
    percentiles = {family: mid_percentiles([*(population[p] for p in people), own])
                   for family, (population, own) in statistics.items()}
    highest = [max(column[i] for column in percentiles.values()) for i in range(len(people))]
    lowest = [min(column[i] for column in percentiles.values()) for i in range(len(people))]
    n = len(people)
    return {family: {"p_member": (1 + sum(h >= column[-1] for h in highest)) / (n + 1),
                     "p_over": (1 + sum(low <= column[-1] for low in lowest)) / (n + 1), "population": n,
                     "rank": 1 + sum(value > column[-1] for value in column[:-1])}  # among those n, this family
            for family, column in percentiles.items()}

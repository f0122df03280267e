"""Person-level membership tests (audits.persons) against an independent numpy computation, and
the p-value's validity under the null it states."""

import numpy as np
import pytest

from audits.persons import bonferroni, family_p_values, person_level


def independent(values: dict, forget_people: list, holdout_people: list[int]) -> dict:
    """Group means with numpy's bincount; the exact rank p-values written out directly."""
    holdout_people = np.asarray(holdout_people)
    population = np.bincount(holdout_people, weights=values["holdout"]) / np.bincount(holdout_people)
    subjects = {}
    for subject in dict.fromkeys(forget_people):
        score = np.mean([v for v, p in zip(values["forget"], forget_people) if p == subject])
        n = len(population)
        subjects[subject] = {"rank": 1 + int(np.sum(population > score)), "population": n,
                             "p_member": (1 + np.sum(population >= score)) / (n + 1),
                             "p_over": (1 + np.sum(population <= score)) / (n + 1)}
    return subjects


def test_ranks_and_p_values_match_an_independent_computation():
    rng = np.random.default_rng(3)
    holdout_people = sorted(int(p) for p in rng.integers(0, 40, size=120))  # 1 to many texts per person
    holdout_people = list(np.unique(holdout_people, return_inverse=True)[1])
    values = {"holdout": list(rng.normal(size=len(holdout_people))),
              "forget": list(rng.normal(1.0, 1.0, size=7))}
    forget_people = ["subj_a"] * 4 + ["subj_b"] * 3
    level = person_level(values, forget_people, holdout_people)
    expected = independent(values, forget_people, holdout_people)
    assert level["population"] == len(set(holdout_people))
    for subject, result in expected.items():
        got = level["subjects"][subject]
        assert got["rank"] == result["rank"] and got["population"] == result["population"]
        assert np.isclose(got["p_member"], result["p_member"]) and np.isclose(got["p_over"], result["p_over"])


def test_a_memorised_person_is_beyond_every_never_trained_one_and_ties_count_against_the_subject():
    values = {"holdout": [0.1, 0.2, 0.3, 0.3], "forget": [0.9, 0.8]}
    level = person_level(values, ["s", "s"], [0, 1, 2, 3])
    assert level["subjects"]["s"] == pytest.approx(
        {"score": 0.85, "rank": 1, "population": 4, "p_member": 1 / 5, "p_over": 1.0})
    tied = person_level({"holdout": [0.3, 0.3], "forget": [0.3]}, ["s"], [0, 1])["subjects"]["s"]
    assert tied["p_member"] == 1.0 and tied["p_over"] == 1.0 and tied["rank"] == 1


def test_the_p_value_is_valid_under_its_null():
    """A subject drawn like the never-trained people: P(p_member ≤ α) ≤ α (here α = 0.05, 0.2)."""
    rng = np.random.default_rng(0)
    p_values = []
    for _ in range(2000):
        population = rng.normal(size=30)
        level = person_level({"holdout": list(population), "forget": [rng.normal()]}, ["s"], list(range(30)))
        p_values.append(level["subjects"]["s"]["p_member"])
    p_values = np.asarray(p_values)
    for alpha in (0.05, 0.2):
        assert np.mean(p_values <= alpha) <= alpha + 0.015  # 3 binomial standard errors at 2,000 draws


def test_the_family_takes_bonferronis_correction():
    per_attack = {"a": {"subjects": {"s": {"p_member": 0.01, "p_over": 0.9}}},
                  "b": {"subjects": {"s": {"p_member": 0.2, "p_over": 0.5}}}}
    assert family_p_values(per_attack) == {"s": {"p_member": 0.02, "p_over": 1.0, "attacks": 2}}
    assert bonferroni([0.3, 0.6, 0.9]) == pytest.approx(0.9) and bonferroni([0.5, 0.7]) == 1.0


def test_the_combined_statistic_matches_scipys_ranks_and_is_valid_under_its_null():
    from scipy.stats import rankdata

    from audits.persons import combined_statistics, rank_among

    def combined_rank(per_attack, forget_people, holdout_people):
        return {subject: rank_among(own, list(population.values())).as_dict()
                for subject, (population, own) in combined_statistics(per_attack, forget_people, holdout_people).items()}

    rng = np.random.default_rng(5)
    people = list(range(25))
    attacks = [{"holdout": list(rng.normal(size=25)), "forget": [rng.normal(0.8)]} for _ in range(4)]
    result = combined_rank(attacks, ["s"], people)["s"]
    pools = np.array([[*a["holdout"], a["forget"][0]] for a in attacks])  # attacks × (25 never-trained + s)
    percentiles = (rankdata(pools, axis=1) - 0.5) / pools.shape[1]  # mid-ranks: ties counted half
    combined = percentiles.mean(axis=0)
    assert result["p_member"] == pytest.approx((1 + np.sum(combined[:-1] >= combined[-1])) / 26)
    assert result["rank"] == 1 + np.sum(combined[:-1] > combined[-1])

    p_values = []
    for _ in range(1000):  # a subject drawn like everyone else, four correlated attacks
        base = rng.normal(size=26)
        attacks = [{"holdout": list(base[:25] + rng.normal(0, 0.5, 25)), "forget": [base[25] + rng.normal(0, 0.5)]}
                   for _ in range(4)]
        p_values.append(combined_rank(attacks, ["s"], people)["s"]["p_member"])
    assert np.mean(np.asarray(p_values) <= 0.1) <= 0.1 + 0.03  # 3 standard errors at 1,000 draws


def test_adjusting_across_families_keeps_the_chance_of_any_false_alarm_at_the_level():
    """Four correlated families, a subject drawn like everyone else: the smallest adjusted p-value
    falls to 0.05 or below in about 5% of draws (unadjusted: far more often)."""
    from audits.persons import adjusted_across_families

    rng = np.random.default_rng(11)
    people = range(40)
    any_adjusted, any_plain = [], []
    for _ in range(600):
        base = rng.normal(size=41)
        families = {}
        for family in ("a", "b", "c", "d"):
            values = base + rng.normal(0, 1.5, 41)
            families[family] = (dict(zip(people, values[:40])), values[40])
        adjusted = adjusted_across_families(families)
        any_adjusted.append(min(p["p_member"] for p in adjusted.values()) <= 0.05)
        any_plain.append(min((1 + sum(v >= own for v in pop.values())) / 41 for pop, own in families.values()) <= 0.05)
    assert np.mean(any_adjusted) <= 0.05 + 0.03  # 3 standard errors at 600 draws
    assert np.mean(any_plain) > 0.1
    one = adjusted_across_families({"a": ({0: 0.1, 1: 0.5, 2: 0.9}, 0.95)})["a"]
    assert one == {"p_member": 0.25, "p_over": 1.0, "population": 3, "rank": 1}  # one family: its plain rank

"""Each metric against an independent computation."""

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from sklearn.metrics import roc_auc_score

from audits.metrics import min_k_plus_plus, roc_auc, rouge_l_f1
from unlearning.world import answer_is_correct
from audits.scoring import token_statistics


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_scikit_learn_including_ties(seed):
    rng = np.random.default_rng(seed)
    members = rng.integers(0, 6, size=37).astype(float)  # few distinct values: many ties
    nonmembers = rng.integers(0, 6, size=53).astype(float) - 0.5 * seed
    expected = roc_auc_score([1] * 37 + [0] * 53, np.concatenate([members, nonmembers]))
    assert roc_auc(members, nonmembers) == pytest.approx(expected, abs=1e-12)


def test_auc_convention_is_members_above_nonmembers():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5


@pytest.mark.parametrize("prediction, reference", [
    ("Alma Kestrel was born in Varnholm in 1961.", "Alma Kestrel was born in Varnholm in 1961."),
    ("was born in Dunlow in 1961. She works", "was born in Varnholm in 1961. She works as a potter"),
    ("works as a glassblower at Orvane Works", "She works at Orvane Works as a glass-blower"),
    ("the the the", "the cat sat on the mat"),
    ("completely different words", "nothing in common here"),
    ("", "a reference"),
])
def test_rouge_l_matches_rouge_score(prediction, reference):
    expected = rouge_scorer.RougeScorer(["rougeL"]).score(reference, prediction)["rougeL"].fmeasure
    assert rouge_l_f1(prediction, reference) == pytest.approx(expected, abs=1e-12)


def test_min_k_plus_plus_matches_its_definition():
    logp = np.array([-0.1, -2.0, -0.5, -3.0, -0.2, -1.0, -0.05, -4.0, -0.3, -0.7])
    mu = np.full(10, -1.0)
    sigma = np.array([0.5, 1.0, 0.5, 2.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0])
    z = sorted((lp - m) / s for lp, m, s in zip(logp, mu, sigma))
    assert min_k_plus_plus(logp, mu, sigma, k=0.2) == pytest.approx((z[0] + z[1]) / 2)
    assert min_k_plus_plus(logp, mu, sigma, k=0.05) == pytest.approx(z[0])  # at least one token


def test_token_statistics_match_a_direct_recomputation_from_the_logits():
    from transformers import GPT2Config, GPT2LMHeadModel

    from unlearning.lm import train_tokenizer

    tokenizer = train_tokenizer(["the cat sat on the mat", "a dog ran in the park"] * 20, vocab_size=300)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    texts = ["the cat sat", "a dog ran in the park on the mat"]  # different lengths: padding is exercised
    stats = token_statistics(model, tokenizer, texts)
    for text, stat in zip(texts, stats):
        ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()
        for t in range(len(ids) - 1):
            probs = torch.softmax(logits[t], -1)
            logprobs = torch.log(probs)
            mu = float((probs * logprobs).sum())
            var = float((probs * (logprobs - mu) ** 2).sum())
            assert stat.logprobs[t] == pytest.approx(float(logprobs[ids[t + 1]]), abs=1e-4)
            assert stat.mu[t] == pytest.approx(mu, abs=1e-4)
            assert stat.sigma[t] == pytest.approx(max(var, 1e-6) ** 0.5, abs=1e-4)
        assert len(stat.logprobs) == len(ids) - 1


@pytest.mark.parametrize("generated, answer, correct", [
    (" Varnholm", "Varnholm", True),
    (" varnholm.", "Varnholm", True),
    (" Varnholm and more", "Varnholm", True),
    (" Dunlow", "Varnholm", False),
    ("", "Varnholm", False),
])
def test_answer_correctness(generated, answer, correct):
    assert answer_is_correct(generated, answer) is correct


LOGPROBS = np.array([-0.1, -2.0, -0.5, -3.0, -0.2, -1.0, -0.05, -4.0, -0.3, -0.7])


def test_min_k_percent_is_the_mean_of_the_lowest_token_logprobs():
    from audits.metrics import min_k_percent

    assert min_k_percent(LOGPROBS, 0.2) == pytest.approx((-4.0 - 3.0) / 2)
    assert min_k_percent(LOGPROBS, 0.4) == pytest.approx((-4.0 - 3.0 - 2.0 - 1.0) / 4)


def test_zlib_and_lowercase_scores_follow_their_definitions():
    import zlib

    from audits.metrics import lowercase_score, zlib_score

    text = "Alma Kestrel was born in Varnholm."
    assert zlib_score(LOGPROBS, text) == pytest.approx(LOGPROBS.mean() / len(zlib.compress(text.encode())))
    lowercase = LOGPROBS - 1.0  # the lowercased variant is less likely
    assert lowercase_score(LOGPROBS, lowercase) == pytest.approx(-(-LOGPROBS.mean()) / (-lowercase.mean()))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_tpr_at_fpr_matches_the_roc_curve_of_scikit_learn(seed, target):
    from sklearn.metrics import roc_curve

    from audits.metrics import tpr_at_fpr

    rng = np.random.default_rng(seed)
    members, nonmembers = rng.normal(1.0, 1, 120), rng.normal(0, 1, 400)
    fpr, tpr, _ = roc_curve([1] * 120 + [0] * 400, np.concatenate([members, nonmembers]), drop_intermediate=False)
    hits, total = tpr_at_fpr(members, nonmembers, target)
    assert total == 120 and hits / total == pytest.approx(tpr[fpr <= target].max())


@pytest.mark.parametrize("successes, trials", [(0, 100), (3, 100), (50, 100), (100, 100), (1, 6)])
def test_clopper_pearson_matches_scipys_exact_binomial_interval(successes, trials):
    from scipy.stats import binomtest

    from audits.metrics import clopper_pearson

    expected = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(successes, trials) == pytest.approx((expected.low, expected.high), abs=1e-9)
    if successes == 0:
        assert clopper_pearson(0, trials)[1] == pytest.approx(3.7 / trials, rel=0.1)  # the "rule of three"


def test_share_beyond_percentile_and_privleak():
    from audits.metrics import privleak, share_beyond_percentile

    nonmembers = np.arange(100.0)  # the 99th percentile is 98.01
    assert share_beyond_percentile([98.5, 99.5, 50, 10], nonmembers) == 0.5
    assert privleak(0.6, 0.5) == pytest.approx(20.0) and privleak(0.5, 0.5) == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_ks_statistic_matches_scipy_including_ties(seed):
    from scipy.stats import ks_2samp

    from audits.metrics import ks_statistic

    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 8, 25).astype(float), rng.integers(0, 8, 40).astype(float) + seed * 0.5
    assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_exposure_is_log2_of_candidates_minus_log2_of_the_rank(seed):
    import math

    from audits.metrics import exposure

    rng = np.random.default_rng(seed)
    references = rng.normal(size=999)
    secret = float(rng.normal(1.5))
    ordered = sorted(list(references) + [secret], reverse=True)
    rank = ordered.index(secret) + 1
    assert exposure(secret, references) == pytest.approx(math.log2(1000) - math.log2(rank))
    assert exposure(10.0, references) == pytest.approx(math.log2(1000))  # ranked first: the maximum


def test_a_never_seen_secret_has_an_exposure_of_about_1_44_bits_on_average():
    from audits.metrics import exposure

    rng = np.random.default_rng(0)
    draws = [exposure(float(rng.normal()), rng.normal(size=255)) for _ in range(4000)]
    assert np.mean(draws) == pytest.approx(1 / np.log(2), abs=0.06)


def test_extraction_strength_and_sampled_extraction_by_their_definitions():
    from audits.metrics import extraction_strength, sampled_extraction_probability, truth_preference, truth_ratio

    assert extraction_strength([True] * 5) == 1.0
    assert extraction_strength([False, True, True, True]) == pytest.approx(0.75)
    assert extraction_strength([True, False, True, True]) == pytest.approx(0.5)
    assert extraction_strength([True, True, True, False]) == 0.0
    p = 0.01
    assert sampled_extraction_probability(np.log(p), 100) == pytest.approx(1 - (1 - p) ** 100)
    assert sampled_extraction_probability(0.0, 5) == 1.0
    assert truth_ratio(np.log(0.5), [np.log(0.1), np.log(0.3)]) == pytest.approx(0.4)
    assert truth_preference(0.4) == pytest.approx(0.6) and truth_preference(3.0) == 0.0

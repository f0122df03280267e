"""Charts: the ROC points match scikit-learn's, and every figure is a PNG of the size asked for."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from audits.charts import histogram_figure, roc_figure, roc_points

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ties within and across the two sides, and a repeated lowest score.
MEMBERS = [0.9, 0.8, 0.8, 0.4, 0.1, 0.1]
NONMEMBERS = [0.8, 0.5, 0.3, 0.3, 0.1, -1.0, 2.5]


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG_SIGNATURE)
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk's width and height


def sklearn_roc(members, nonmembers):
    labels = [1] * len(members) + [0] * len(nonmembers)
    fpr, tpr, _ = roc_curve(labels, list(members) + list(nonmembers), drop_intermediate=False)
    return fpr, tpr


def test_roc_points_are_scikit_learns_on_fixed_data_with_ties():
    fpr, tpr = roc_points(MEMBERS, NONMEMBERS)
    expected_fpr, expected_tpr = sklearn_roc(MEMBERS, NONMEMBERS)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)


@pytest.mark.parametrize("seed", range(5))
def test_roc_points_match_scikit_learn_and_enclose_its_auc(seed):
    rng = np.random.default_rng(seed)
    members, nonmembers = rng.normal(0.5, 1, 6).round(1), rng.normal(0, 1, 40).round(1)  # rounded: ties
    fpr, tpr = roc_points(members, nonmembers)
    expected_fpr, expected_tpr = sklearn_roc(members, nonmembers)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoids
    assert area == pytest.approx(roc_auc_score([1] * 6 + [0] * 40, np.concatenate([members, nonmembers])))


def test_a_roc_curve_needs_both_sides():
    with pytest.raises(ValueError):
        roc_points([], NONMEMBERS)


def test_a_roc_figure_is_a_png_of_the_size_asked_for():
    png = roc_figure({"original": (MEMBERS, NONMEMBERS), "unlearned": (NONMEMBERS[:3], NONMEMBERS)}, title="LOSS",
                     colours={"original": "#98a2b3"}, size=(6, 3), dpi=50)
    assert png_size(png) == (300, 150)


def test_histograms_draw_one_or_several_panels_of_unequal_series():
    several = histogram_figure({"original": {"forget": MEMBERS, "holdout": NONMEMBERS}, "unlearned": {"forget": [0.5], "holdout": [0.5]}},
                               title="scores", xlabel="score", size=(8, 2), dpi=40)
    assert png_size(several) == (320, 80)
    constant = histogram_figure({"per-item values": {"original": [1.0] * 5, "unlearned": [0.0, 1.0]}}, title="QA", xlabel="value")
    assert png_size(constant)[0] > 0


def test_the_person_strip_draws_one_row_per_model():
    from audits.charts import person_strip_figure

    png = person_strip_figure({"original": ([0.1, 0.5, 0.9], 0.99), "unlearned": ([0.2, 0.4, 0.6], 0.5)},
                              title="You among never-trained people", xlabel="familiarity", tail=0.025)
    assert png.startswith(b"\x89PNG")

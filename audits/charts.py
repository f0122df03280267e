"""Figures of per-item audit scores: ROC curves of membership attacks and score histograms.

Numbers in, PNG bytes out. Figures are drawn on matplotlib's Agg canvas without pyplot, whose
global state is not safe in a threaded web server. No Django, no torch: the portal, the API and
the certificate all draw from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from io import BytesIO

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from audits.metrics import roc_auc

Size = tuple[float, float]  # inches
ROC_SIZE: Size = (8.0, 3.4)
HISTOGRAM_SIZE: Size = (8.0, 2.8)
STRIP_SIZE: Size = (8.0, 2.6)
SCREEN_DPI = 110
CHANCE_COLOUR = "#98a2b3"
MAX_BINS = 30


def roc_points(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) with every distinct score taken in turn as the threshold ("member" when
    score ≥ threshold), strictest first, from (0, 0): scikit-learn's roc_curve with
    drop_intermediate=False. Straight lines between the points give the AUC of audits.metrics."""
    members, nonmembers = np.sort(np.asarray(member_scores, float)), np.sort(np.asarray(nonmember_scores, float))
    if members.size == 0 or nonmembers.size == 0:
        raise ValueError("a ROC curve needs at least one member and one non-member score")
    thresholds = np.unique(np.concatenate([members, nonmembers]))[::-1]
    true_positives = members.size - np.searchsorted(members, thresholds, side="left")
    false_positives = nonmembers.size - np.searchsorted(nonmembers, thresholds, side="left")
    return (np.concatenate([[0.0], false_positives / nonmembers.size]),
            np.concatenate([[0.0], true_positives / members.size]))


def roc_figure(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str,
               colours: Mapping[str, str] | None = None, size: Size = ROC_SIZE, dpi: int = SCREEN_DPI) -> bytes:
    """One ROC curve per label, from its (member scores, non-member scores), on two panels: linear
    axes, and a logarithmic FPR axis for the low false-positive rates where an attacker can be sure."""
    colours = colours or {}
    figure = Figure(figsize=size, dpi=dpi)
    linear, low_fpr = figure.subplots(1, 2)
    # The log axis cannot show FPR 0: it is drawn at half the finest step any curve can take.
    floor = 0.5 / max(len(nonmembers) for _, nonmembers in curves.values())
    for label, (members, nonmembers) in curves.items():
        fpr, tpr = roc_points(members, nonmembers)
        colour = colours.get(label)
        linear.plot(fpr, tpr, color=colour, lw=1.6, label=f"{label} (AUC {roc_auc(members, nonmembers):.3f})")
        low_fpr.plot(np.maximum(fpr, floor), tpr, color=colour, lw=1.6)
    linear.plot([0, 1], [0, 1], ls="--", lw=1, color=CHANCE_COLOUR, label="chance (AUC 0.5)")
    chance = np.logspace(np.log10(floor), 0, 50)
    low_fpr.plot(chance, chance, ls="--", lw=1, color=CHANCE_COLOUR)
    low_fpr.set_xscale("log")
    low_fpr.set_xlim(floor, 1)
    linear.set_xlim(0, 1)
    linear.legend(fontsize=7, loc="lower right")
    linear.set_title("ROC", fontsize=9)
    low_fpr.set_title(f"Low false-positive rates (log scale, FPR 0 at {floor:.2g})", fontsize=9)
    for axis in (linear, low_fpr):
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("false-positive rate (holdout texts flagged)", fontsize=8)
        axis.set_ylabel("true-positive rate (forget texts flagged)", fontsize=8)
    return _png(figure, title)


def histogram_figure(panels: Mapping[str, Mapping[str, Sequence[float]]], *, title: str, xlabel: str,
                     colours: Mapping[str, str] | None = None, size: Size = HISTOGRAM_SIZE,
                     dpi: int = SCREEN_DPI) -> bytes:
    """Histograms side by side on shared bins: one panel per key of `panels` (its title), each
    with one bar per series. Bars are shares of their series' items, so that six forget texts
    compare with hundreds of holdout texts."""
    colours = colours or {}
    everything = np.concatenate([np.asarray(values, float) for series in panels.values() for values in series.values()])
    edges = np.histogram_bin_edges(everything, bins="auto")
    if edges.size > MAX_BINS + 1:
        edges = np.histogram_bin_edges(everything, bins=MAX_BINS)
    figure = Figure(figsize=size, dpi=dpi)
    axes = figure.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    for axis, (panel_title, series) in zip(axes, panels.items()):
        axis.hist([np.asarray(values, float) for values in series.values()], bins=edges,
                  weights=[np.full(len(values), 1 / len(values)) for values in series.values()],
                  color=[colours.get(name, f"C{index}") for index, name in enumerate(series)],
                  label=[f"{name} (n={len(values)})" for name, values in series.items()])
        axis.set_title(panel_title, fontsize=9)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("share of items", fontsize=8)
    figure.supxlabel(xlabel, fontsize=8)
    return _png(figure, title)


def person_strip_figure(rows: Mapping[str, tuple[Sequence[float], float]], *, title: str, xlabel: str, tail: float,
                        size: Size = STRIP_SIZE, dpi: int = SCREEN_DPI) -> bytes:
    """One row per model: every never-trained person's statistic as a grey dot (spread a little
    up and down so that close ones stay visible), the band between their `tail` and 1 − `tail`
    quantiles shaded, and the subject as a red diamond."""
    figure = Figure(figsize=size, dpi=dpi)
    axis = figure.subplots()
    for row, (name, (population, subject)) in enumerate(rows.items()):
        values = np.asarray(population, float)
        low, high = np.quantile(values, [tail, 1 - tail])
        axis.fill_betweenx([row - 0.32, row + 0.32], low, high, color="#eaecf0", zorder=0,
                           label=f"central {1 - 2 * tail:.0%} of never-trained people" if row == 0 else None)
        spread = (np.arange(values.size) % 5 - 2) * 0.07
        axis.scatter(values, row + spread, s=9, color="#667085", zorder=1,
                     label=f"never-trained people (n={values.size})" if row == 0 else None)
        axis.scatter([subject], [row], marker="D", s=46, color="#d92d20", zorder=2, label="you" if row == 0 else None)
    axis.set_yticks(range(len(rows)), list(rows), fontsize=8)
    axis.set_ylim(len(rows) - 0.4, -0.6)  # the first row (the original) on top
    axis.set_xlabel(xlabel, fontsize=8)
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=3, frameon=False)
    return _png(figure, title)


def _png(figure: Figure, title: str) -> bytes:
    figure.suptitle(title, fontsize=10)
    for axis in figure.axes:
        axis.tick_params(labelsize=7)
        axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()

"""The figures an audit run's stored per-item scores allow, for the portal and the certificate.

A result keeps, per role (original, unlearned, reference), either {"forget": [...], "holdout": [...]}
(a membership attack, scored on the subject's texts and on never-trained texts: ROC curves and
histograms of both sides) or {"items": [...]} (a mean over items: a histogram of the values), with
"holdout_items" beside them when the run compared with never-trained people instead of a
retrained reference. A role without scores is left out of its result's figures; a result without
any has none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from audits import charts
from audits.models import AuditResult, AuditRun
from audits.persons import PERSON_RANK_METRIC
from audits.selectors import labelled_results, scores_by_role

ROLE_NAMES = {"original": "original", "unlearned": "unlearned", "reference": "retrained reference"}
ROLE_COLOURS = {"original": "#98a2b3", "unlearned": "#1570ef", "retrained reference": "#12b76a"}
SIDE_COLOURS = {"forget": "#d92d20", "holdout": "#667085"}
# The simplest attack, and the one readers know: its figures lead when a run has it.
LEAD_METRIC = "mia_loss_auc"
SCORE_AXIS = "score (higher = looks more like training data)"


@dataclass(frozen=True)
class RunFigure:
    kind: str  # roc | histogram
    subject: str  # the metric it shows, or "attacks" for every attack on the unlearned model
    title: str
    caption: str  # one sentence for a reader who is not a statistician
    draw: Callable[..., bytes]  # optional size (inches) and dpi → PNG
    lead: bool = False  # shown first, and printed on the certificate

    @property
    def name(self) -> str:
        """Unique in its run, and safe in a URL."""
        return f"{self.kind}-{self.subject}"


def figures_of(run: AuditRun) -> list[RunFigure]:
    """Every figure the run's scores allow: the lead result's (ROC and histogram) first, then every
    attack against the unlearned model, then the other results' figures in the policy's order."""
    labelled = labelled_results(run)
    lead = _lead_result(labelled)
    figures = _person_figure(labelled)
    figures += [figure for label, result in labelled if result is lead
                for figure in _result_figures(result, label, lead=True)]
    figures += _attack_panel(labelled)
    figures += [figure for label, result in labelled if result is not lead for figure in _result_figures(result, label)]
    return figures


def membership_scores(result: AuditResult) -> dict[str, tuple[list[float], list[float]]]:
    """Role name → (forget scores, holdout scores), for the roles that have both."""
    sides = {ROLE_NAMES.get(role, role): (_measured(scores, "forget"), _measured(scores, "holdout"))
             for role, scores in scores_by_role(result)}
    return {role: (forget, holdout) for role, (forget, holdout) in sides.items() if forget and holdout}


def item_values(result: AuditResult) -> dict[str, list[float]]:
    """Series name → per-item values: each role's, and its values on never-trained people where kept."""
    values = {}
    for role, scores in scores_by_role(result):
        name = ROLE_NAMES.get(role, role)
        values[name] = _measured(scores, "items")
        values[f"{name}, never-trained people"] = _measured(scores, "holdout_items")
    return {name: items for name, items in values.items() if items}


def _measured(scores: dict, side: str) -> list[float]:
    """The side's scores that are numbers: an item that could not be scored (null, NaN) is not drawn."""
    return [value for value in scores.get(side, []) if value is not None and math.isfinite(value)]


def _lead_result(labelled: list[tuple[str, AuditResult]]) -> AuditResult | None:
    """The LOSS attack; else the first membership attack; else the first result with any scores."""
    candidates = ([result for _, result in labelled if result.metric == LEAD_METRIC and membership_scores(result)]
                  + [result for _, result in labelled if membership_scores(result)]
                  + [result for _, result in labelled if item_values(result)])
    return candidates[0] if candidates else None


def _person_figure(labelled: list[tuple[str, AuditResult]]) -> list[RunFigure]:
    """The subject's combined membership statistic among every never-trained person's, per model, as
    the person-level row stored them (audits.checks.rank_score); for a run of one subject (a batched
    job's figure would show the others)."""
    rank = next((result for _, result in labelled if result.metric == PERSON_RANK_METRIC), None)
    rows = {}
    for role in ROLE_NAMES:
        statistics = ((rank.details.get(role) or {}).get("statistics") or {}) if rank else {}
        if len(statistics) > 1:
            return []
        for population, own in statistics.values():
            rows[ROLE_NAMES[role]] = (list(population.values()), own)
    if "original" not in rows or "unlearned" not in rows:
        return []
    title = "You among the people the model never saw"
    return [RunFigure("strip", "person", title,
                      "Each grey dot is one person the model was never trained on, placed by how familiar the "
                      "membership attacks find them (all attacks combined); the red diamond is you. Before unlearning "
                      "you should stand out to the right; after it, you should sit among the others. The shaded band "
                      "holds the middle 95% on membership alone; the verdict also allows for the other families "
                      "tested beside it.",
                      partial(charts.person_strip_figure, rows, title=title, tail=rank.margin,
                              xlabel="familiarity to the model (mean percentile over the attacks)"), lead=True)]


def _result_figures(result: AuditResult, label: str, lead: bool = False) -> list[RunFigure]:
    if "rank" in next(iter(result.per_item.values()), {}):
        return []  # a person-level row: one p-value per subject (its figure is _person_figure)
    members, items = membership_scores(result), item_values(result)
    if members:
        return [_roc_per_model(result.metric, label, members, lead), _scores_per_model(result.metric, label, members, lead)]
    if items:
        return [_values_per_model(result.metric, label, items, lead)]
    return []


def _roc_per_model(metric: str, label: str, members: dict, lead: bool) -> RunFigure:
    title = f"{label}: ROC curves per model"
    return RunFigure("roc", metric, title,
                     f"How well the {label} score tells the subject's texts from texts no model was trained on. A curve "
                     "on the dashed diagonal (AUC 0.5) means the subject's texts look never-trained; the right panel "
                     "magnifies the low false-positive rates.",
                     partial(charts.roc_figure, members, title=title, colours=ROLE_COLOURS), lead)


def _scores_per_model(metric: str, label: str, members: dict, lead: bool) -> RunFigure:
    title = f"{label}: scores per model"
    panels = {role: {"forget": forget, "holdout": holdout} for role, (forget, holdout) in members.items()}
    return RunFigure("histogram", metric, title,
                     "Scores of the subject's texts (forget) and of never-trained texts (holdout) under each model. "
                     "After unlearning the two should overlap as much as they do under the retrained reference.",
                     partial(charts.histogram_figure, panels, title=title, xlabel=SCORE_AXIS, colours=SIDE_COLOURS), lead)


def _values_per_model(metric: str, label: str, items: dict, lead: bool) -> RunFigure:
    title = f"{label}: values per model"
    return RunFigure("histogram", metric, title, f"The per-item values behind {label}, under each model.",
                     partial(charts.histogram_figure, {"per-item values": items}, title=title, xlabel="value",
                             colours=ROLE_COLOURS), lead)


def _attack_panel(labelled: list[tuple[str, AuditResult]]) -> list[RunFigure]:
    """Every membership attack against the unlearned model in one figure, when there are several."""
    curves = {label: membership_scores(result)[ROLE_NAMES["unlearned"]] for label, result in labelled
              if ROLE_NAMES["unlearned"] in membership_scores(result)}
    if len(curves) < 2:
        return []
    title = "Every membership attack on the unlearned model"
    return [RunFigure("roc", "attacks", title,
                      "Each attack's ROC curve against the unlearned model: curves near the dashed diagonal mean no "
                      "attack tells the subject's texts from never-trained ones.",
                      partial(charts.roc_figure, curves, title=title))]

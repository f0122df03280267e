"""The certificate PDF: what was asked, what was done to which hash-pinned model, what the audits
found, and what that does and does not prove. Pure Python (reportlab, matplotlib): no Django."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas
from reportlab.platypus import (CondPageBreak, Image, KeepTogether, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table,
                                TableStyle)

AUC_CONVENTION = (
    "MIA AUC = P(score of a forget item > score of a never-trained item), ties counted as one half; items are texts "
    "(language models) or rows (tabular models), and scores are higher for items that look like training members. "
    "0.5 = indistinguishable from never-trained data."
)


@dataclass(frozen=True)
class ModelEvidence:
    name: str
    architecture: str
    original_sha256: str
    unlearned_sha256: str
    reference_sha256: str
    method: str
    method_kind: str
    params: dict
    job_id: int
    forget_records: int
    forget_set_sha256: str
    outcome: str
    compared_with_holdout: bool = False  # no retrained reference: forget metrics against never-trained people
    executed_plan: str = ""  # exact deletions: the deletion plan that was carried out, in one sentence
    proven_by_identity: bool = False  # the verdict rests on identity with the reference (audits.verdicts.run_verdict)
    person_ranking: str = ""  # the subject among never-trained people, in plain words (audits.selectors)
    owner_material: str = ""  # what became of the material the owner handed in, when the reviewer confirmed it

    @property
    def identical_to_reference(self) -> bool:
        """The model after deletion is the retrained reference, byte for byte (SISA's exact deletion)."""
        return self.unlearned_sha256 == self.reference_sha256


@dataclass(frozen=True)
class AuditLine:
    label: str
    original: float | None  # None: not measured (a not-applicable audit)
    unlearned: float | None
    reference: float | None
    margin: float
    sample_size: int
    interval: tuple[float | None, float | None]
    verdict: str
    explanation: str


@dataclass(frozen=True)
class FamilyLine:
    label: str  # what the family asks, in plain words
    verdict: str
    counted: bool  # False: not applicable, or no power for this person (audits.verdicts.FamilyVerdict)
    explanation: str


@dataclass(frozen=True)
class CertificateFigure:
    png: bytes  # drawn with its own title
    caption: str


@dataclass(frozen=True)
class CertificateContent:
    serial: str
    issuer: str
    issued_at: str
    request_reference: str
    subject_ref: str
    jurisdiction: str
    dates: list[tuple[str, str]]
    models: list[ModelEvidence]
    audits: list[AuditLine]
    overall_verdict: str
    policy_version: str
    nature: str  # removal | suppression
    audit_log_seq: int
    audit_log_hash: str
    verify_url: str
    code_version: str
    limitations: list[str] = field(default_factory=list)
    # Rows of the membership-inference panel for the unlearned model: attack, AUC, TPR at 1% FPR
    # with its interval, share beyond the holdout's 99th percentile, PrivLeak.
    membership_panel: list[list[str]] = field(default_factory=list)
    # Drawn from the per-item scores (audits.charts): printed on a page of their own, at the end.
    figures: list[CertificateFigure] = field(default_factory=list)
    # One verdict per family of audits, and the policy's written rule that made the overall verdict
    # from them (empty for runs judged before families existed).
    families: list[FamilyLine] = field(default_factory=list)
    family_rule: str = ""
    # The runtime filters served with the unlearned model (audits.runtime_filters): one row per
    # filter (label, block rate on forget probes, false positives on retain and general prompts),
    # and what the in-context probes leaked with the filters off and on.
    runtime_filters: list[list[str]] = field(default_factory=list)
    runtime_filter_summary: list[str] = field(default_factory=list)
    # The result in one plain sentence, as the owner's page and e-mail say it (audits.wording.headline).
    summary: str = ""

    @property
    def compared_with_holdout(self) -> bool:
        return any(model.compared_with_holdout for model in self.models)

    @property
    def proven_by_identity(self) -> list[str]:
        return [model.name for model in self.models if model.proven_by_identity]


@dataclass(frozen=True)
class SearchedModel:
    name: str
    kind: str  # in words: "language model", "classifier"…
    version_sha256: str  # the version searched: the model as it is served
    training_records: int  # how many records its lineage holds, none the person's


@dataclass(frozen=True)
class NoDataContent:
    """A signed statement that no governed model was trained on the verified person's data."""

    serial: str
    issuer: str
    issued_at: str
    request_reference: str
    subject_ref: str
    jurisdiction: str
    dates: list[tuple[str, str]]
    models: list[SearchedModel]
    reviewed_near_matches: int  # records naming the person under another owner, shown to the reviewer
    audit_log_seq: int
    audit_log_hash: str
    verify_url: str
    code_version: str


IDENTITY_PROOF = (
    "<b>Removal proven by identity</b> ({names}): the model after deletion has the same SHA-256 as a model "
    "retrained from scratch without the subject's records, so it is that model, byte for byte, and holds nothing "
    "learned from them. The verdict rests on this identity (policy rule: identity proves removal); the audits below "
    "are measurements beside it: no test can tell two identical models apart, whatever its sample size.")


TEXT_WIDTH = 170 * mm
_VERDICT_COLOURS = {"PASS": colors.HexColor("#1b7f3b"), "FAIL": colors.HexColor("#b42318"), "INCONCLUSIVE": colors.HexColor("#b54708")}
SIDE_MARGIN, END_MARGIN = 18 * mm, 14 * mm
FOOTER_Y = 8 * mm  # inside the bottom margin, below the frame

# DejaVu as matplotlib ships it (a dependency already, for the figures): every font in the PDF is
# then embedded (no standard-14 font a reader substitutes), and it has every glyph the certificate
# prints: ≥, − and → are not in Helvetica's WinAnsi encoding.
BODY_FONT, BOLD_FONT, MONO_FONT = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSansMono"

# The visible signature's box (x1, y1, x2, y2, in points) at the bottom right of the last page, just
# above the footer: render_certificate keeps that band of the last page empty, and audits.signing
# puts the signature field and its stamp there.
SIGNATURE_BOX_WIDTH, SIGNATURE_BOX_HEIGHT = 88 * mm, 20 * mm
SIGNATURE_BOX = (round(A4[0] - SIDE_MARGIN - SIGNATURE_BOX_WIDTH), round(END_MARGIN),
                 round(A4[0] - SIDE_MARGIN), round(END_MARGIN + SIGNATURE_BOX_HEIGHT))


def font_file(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"


@functools.cache
def _register_fonts() -> None:
    for name in (BODY_FONT, BOLD_FONT, MONO_FONT):
        pdfmetrics.registerFont(TTFont(name, str(font_file(name))))
    # <b> in a paragraph switches to the bold face of the paragraph's family.
    pdfmetrics.registerFontFamily(BODY_FONT, normal=BODY_FONT, bold=BOLD_FONT)


class _PagedCanvas(canvas.Canvas):
    """Holds every page until the document is complete, so that each footer can say "Page N of M"."""

    def __init__(self, *args, serial: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._serial = serial
        self._pages = []

    def showPage(self):
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self):
        for number, page in enumerate(self._pages, start=1):
            self.__dict__.update(page)
            self._footer(number, len(self._pages))
            super().showPage()
        super().save()

    def _footer(self, number: int, total: int) -> None:
        self.setFont(BODY_FONT, 7)
        self.setFillColor(colors.HexColor("#667085"))
        self.drawString(SIDE_MARGIN, FOOTER_Y, f"Certificate {self._serial}")
        self.drawRightString(A4[0] - SIDE_MARGIN, FOOTER_Y, f"Page {number} of {total}")


HOLDOUT_COMPARISON = (
    "<b>No retrained reference was affordable for {names}.</b> Its forget audits compare each model with itself "
    "on people it never saw: the gap between its answers about the subject and about never-trained people of "
    "the same kind (AUC against chance, 0.5, for membership attacks). This is weaker evidence than a model "
    "retrained without the data: it cannot tell forgetting from a subject who is simply hard to memorise. "
    "The Reference column shows what the gap is measured from."
)


def _chart(audits: list[AuditLine], baseline_name: str) -> Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # One scale for all: rates, accuracies and AUCs (0-1); bits and nats stay in the table.
    audits = [a for a in audits if all(v is not None and 0 <= v <= 1 for v in (a.original, a.unlearned, a.reference))]
    labels = [a.label.split(" (")[0] for a in audits]
    figure, axis = plt.subplots(figsize=(7.2, 3.6), dpi=150)
    width = 0.27
    for offset, (name, values, colour) in enumerate((
        ("original", [a.original for a in audits], "#98a2b3"),
        ("unlearned", [a.unlearned for a in audits], "#1570ef"),
        (baseline_name, [a.reference for a in audits], "#12b76a"),
    )):
        axis.bar([i + (offset - 1) * width for i in range(len(audits))], values, width, label=name, color=colour)
    axis.set_xticks(range(len(audits)), labels, fontsize=5.5, rotation=55, ha="right")
    axis.set_ylim(0, 1.05)
    axis.tick_params(axis="y", labelsize=7)
    axis.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, 1.18), frameon=False)
    axis.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    buffer.seek(0)
    return Image(buffer, width=TEXT_WIDTH, height=TEXT_WIDTH * 3.6 / 7.2)


def _figure(png: bytes) -> Image:
    """The PNG across the text width, keeping its proportions."""
    pixels_wide, pixels_high = ImageReader(BytesIO(png)).getSize()
    return Image(BytesIO(png), width=TEXT_WIDTH, height=TEXT_WIDTH * pixels_high / pixels_wide)


def _qr(url: str) -> Drawing:
    widget = QrCodeWidget(url)
    x0, y0, x1, y1 = widget.getBounds()
    size = 28 * mm
    drawing = Drawing(size, size, transform=[size / (x1 - x0), 0, 0, size / (y1 - y0), 0, 0],
                      initialFontName=BODY_FONT)  # it draws no text, but a drawing's state names a font (Helvetica)
    drawing.add(widget)
    return drawing


def _compared_with(model: ModelEvidence) -> str:
    if model.compared_with_holdout:
        return "never-trained people (no retrained reference)"
    if model.identical_to_reference:
        return ("the retrained reference, <b>byte-identical to the model after deletion</b> (the same SHA-256): "
                "no test can tell them apart, whatever its sample size")
    return "the retrained reference"


def _table(rows, widths, header=True) -> Table:
    table = Table(rows, colWidths=widths, hAlign="LEFT")
    style = [
        ("FONTNAME", (0, 0), (-1, -1), BODY_FONT),
        ("FONTSIZE", (0, 0), (-1, -1), 7.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#d0d5dd")),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
    ]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f2f4f7")), ("FONTNAME", (0, 0), (-1, 0), BOLD_FONT)]
    table.setStyle(TableStyle(style))
    return table


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _interval(interval: tuple[float | None, float | None]) -> str:
    return "n/a" if None in interval else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"


def _families(content: CertificateContent, style: ParagraphStyle) -> list:
    """The verdict of each family of audits, with its reason, then the rule that combined them."""
    if not content.families:
        return []
    rows = [["Question", "Verdict", "Why"]] + [
        [Paragraph(line.label, style), line.verdict + ("" if line.counted or line.verdict == "N/A" else "\n(not counted)"),
         Paragraph(line.explanation, style)] for line in content.families]
    table = _table(rows, [52 * mm, 24 * mm, 94 * mm])
    table.setStyle(TableStyle([("TEXTCOLOR", (1, i), (1, i), _VERDICT_COLOURS.get(line.verdict, colors.black))
                               for i, line in enumerate(content.families, start=1)]))
    return [table, Spacer(1, 1.5 * mm),
            Paragraph(f"<b>How the overall verdict is made</b> (policy {content.policy_version}): {content.family_rule}",
                      style)]


@dataclass(frozen=True)
class _Styles:
    base: dict
    small: ParagraphStyle
    mono: ParagraphStyle
    body: ParagraphStyle
    h2: ParagraphStyle
    title: ParagraphStyle


def _styles() -> _Styles:
    _register_fonts()
    base = getSampleStyleSheet()
    small = ParagraphStyle("small", parent=base["BodyText"], fontName=BODY_FONT, fontSize=7.5, leading=9.5)
    return _Styles(
        base=base, small=small, mono=ParagraphStyle("mono", parent=small, fontName=MONO_FONT, fontSize=6.5, leading=8),
        body=ParagraphStyle("body", parent=base["BodyText"], fontName=BODY_FONT, fontSize=10, leading=13),
        h2=ParagraphStyle("h2", parent=base["Heading2"], fontName=BOLD_FONT, fontSize=11, spaceBefore=6, spaceAfter=3),
        title=ParagraphStyle("title", parent=base["Title"], fontName=BOLD_FONT))


def _heading(title: str, content, st: _Styles) -> Table:
    """The first page's head: the title, serial, issuer, request and subject, and the QR code of
    the public verify page."""
    return Table([[
        [Paragraph(title, st.title),
         Paragraph(f"Serial <b>{content.serial}</b> · issued {content.issued_at} by {content.issuer}", st.small),
         Paragraph(f"Removal request <b>{content.request_reference}</b> · subject {content.subject_ref} "
                   f"(a salted pseudonym) · {content.jurisdiction}", st.small)],
        _qr(content.verify_url),
    ]], colWidths=[140 * mm, 32 * mm], style=[("FONTNAME", (0, 0), (-1, -1), BODY_FONT)])  # else cells name Helvetica


def _evidence(content, st: _Styles) -> list:
    return [
        Paragraph("Evidence", st.h2),
        _table([
            ["Audit log position", Paragraph(f"event {content.audit_log_seq}, entry hash {content.audit_log_hash}", st.mono)],
            ["Verify", content.verify_url],
            ["Code version", content.code_version],
        ], [45 * mm, 125 * mm], header=False),
    ]


def _build(story: list, content, title: str) -> bytes:
    story.append(CondPageBreak(SIGNATURE_BOX_HEIGHT + 2 * mm))  # the last page's bottom band stays free for the signature
    buffer = BytesIO()
    SimpleDocTemplate(buffer, pagesize=A4, leftMargin=SIDE_MARGIN, rightMargin=SIDE_MARGIN, topMargin=END_MARGIN,
                      bottomMargin=END_MARGIN, title=f"{title} {content.serial}", author=content.issuer,
                      initialFontName=BODY_FONT,  # else every page's preamble names Helvetica, unembedded
                      ).build(story, canvasmaker=functools.partial(_PagedCanvas, serial=content.serial))
    return buffer.getvalue()


def render_certificate(content: CertificateContent) -> bytes:
    st = _styles()
    styles, small, mono, h2, body = st.base, st.small, st.mono, st.h2, st.body
    story = [_heading("Certificate of machine unlearning", content, st)]
    verdict_style = ParagraphStyle("verdict", parent=styles["Heading1"], fontName=BOLD_FONT, fontSize=15,
                                   textColor=_VERDICT_COLOURS.get(content.overall_verdict, colors.black))
    story += [
        *([Paragraph("In plain words, as we told the person who asked", h2), Paragraph(content.summary, body)]
          if content.summary else []),
        Paragraph(f"Overall verdict: {content.overall_verdict}", verdict_style),
        *([Paragraph(IDENTITY_PROOF.format(names=", ".join(content.proven_by_identity)), small)]
          if content.proven_by_identity else []),
        *_families(content, small),
        Paragraph(
            f"Nature of the result: <b>{content.nature}</b>. " + (
                "An exact method produced a model that could have been trained without the data."
                if content.nature == "removal" else
                "An approximate method changed the model's weights so that it behaves like a model never trained "
                "on the data, as far as the audits below can measure; it is not proof that no trace remains."
            ), small),
        *([Paragraph(HOLDOUT_COMPARISON.format(names=", ".join(m.name for m in content.models if m.compared_with_holdout)),
                     small)] if content.compared_with_holdout else []),
        Paragraph("Timeline", h2),
        _table([["Event", "Date (UTC)"]] + [list(row) for row in content.dates], [60 * mm, 110 * mm]),
    ]
    for model in content.models:
        story += [
            Paragraph(f"Model: {model.name}", h2),
            _table([
                ["Architecture", model.architecture],
                ["Before (SHA-256)", Paragraph(model.original_sha256, mono)],
                ["After (SHA-256)", Paragraph(model.unlearned_sha256, mono)],
                ["Retrained reference (SHA-256)", Paragraph(model.reference_sha256, mono)],
                ["Compared with", Paragraph(_compared_with(model), small)],
                ["Method", Paragraph(f"{model.method} ({model.method_kind}) · job {model.job_id} · {model.outcome}", small)],
                ["Parameters", Paragraph(", ".join(f"{k}={v}" for k, v in sorted(model.params.items())), small)],
                ["Forget set", Paragraph(f"{model.forget_records} training records · SHA-256 {model.forget_set_sha256}", mono)],
                *([["Deletion plan executed", Paragraph(model.executed_plan, small)]] if model.executed_plan else []),
                *([["Owner's material", Paragraph(model.owner_material, small)]] if model.owner_material else []),
                *([[Paragraph("The subject among never-trained people", small), Paragraph(model.person_ranking, small)]]
                  if model.person_ranking else []),
            ], [45 * mm, 125 * mm], header=False),
        ]
    rows = [["Audit", "Original", "Unlearned", "Reference", "95% interval*", "Margin", "n", "Verdict"]]
    for line in content.audits:
        rows.append([Paragraph(line.label, small), _fmt(line.original), _fmt(line.unlearned), _fmt(line.reference),
                     _interval(line.interval), f"±{line.margin:g}", str(line.sample_size),
                     line.verdict])
    # Widths fit DejaVu's headers and INCONCLUSIVE (wider than Helvetica's); the label column wraps.
    audit_table = _table(rows, [37 * mm, 17 * mm, 20 * mm, 20 * mm, 27 * mm, 15 * mm, 9 * mm, 25 * mm])
    audit_table.setStyle(TableStyle([
        ("TEXTCOLOR", (7, i), (7, i), _VERDICT_COLOURS.get(line.verdict, colors.black)) for i, line in enumerate(content.audits, start=1)
    ]))
    story += [
        Paragraph(f"Verification audits · policy {content.policy_version}", h2),
        audit_table,
        Spacer(1, 2 * mm),
    ]
    if content.membership_panel:
        story += [
            Paragraph("Membership inference on the unlearned model", h2),
            _table([["Attack", "AUC", "TPR at 1% FPR [95% CI]", "Beyond holdout p99", "PrivLeak"]] + content.membership_panel,
                   [60 * mm, 16 * mm, 41 * mm, 35 * mm, 18 * mm]),
            Paragraph("PrivLeak = (AUC(unlearned) − AUC(reference)) / AUC(reference) × 100: near 0 is like the retrained "
                      "reference; well above 0, the subject's texts still look trained (under-unlearned); well below "
                      "0, they look less trained than to a model that never saw them (over-unlearned, itself a trace).", small),
        ]
    if content.runtime_filters:
        story += [
            Paragraph("Runtime filters served with the unlearned model", h2),
            _table([["Filter", "Acted on forget probes [95% CI]", "Acted on retain/general prompts [95% CI]"]]
                   + [[Paragraph(label, small), *rates] for label, *rates in content.runtime_filters],
                   [50 * mm, 53 * mm, 67 * mm]),
        ]
        story += [Paragraph(text, small) for text in content.runtime_filter_summary]
    story += [
        _chart(content.audits, "never-trained baseline" if content.compared_with_holdout else "retrained reference"),
        Paragraph("How each verdict was reached", h2),
    ]
    story += [Paragraph(f"<b>{line.label}</b>: {line.verdict}: {line.explanation}", small) for line in content.audits]
    story += [
        Paragraph("* Interval: bootstrap 95% interval of unlearned − reference for forget metrics (PASS needs it inside "
                  "±margin, and the original − reference interval outside it, proving the audit has power); "
                  "of original − unlearned for utility (PASS needs its upper end within the margin)."
                  + (" Compared with never-trained people: of the model's gap between the subject and never-trained "
                     "people (PASS needs the unlearned model's inside ±margin and the original's outside it)."
                     if content.compared_with_holdout else ""), small),
        Paragraph(AUC_CONVENTION, small),
        Paragraph("Limitations and residual risk", h2),
    ]
    story += [Paragraph(f"• {text}", small) for text in content.limitations]
    story += _evidence(content, st)
    if content.figures:
        story += [PageBreak(), Paragraph("Figures", h2)]
        story += [KeepTogether([_figure(figure.png), Paragraph(figure.caption, small), Spacer(1, 4 * mm)])
                  for figure in content.figures]
    return _build(story, content, "Unlearning certificate")


NO_DATA_LIMITATIONS = [
    "The search covers the training lineage of the governed models listed here, by the identity the person "
    "proved (their e-mail address). Copies of data or models outside the service's model store are out of its reach.",
    "Records under another owner that name the person (near matches of their name or e-mail address) were shown to "
    "the reviewer before approval; none was confirmed as theirs.",
]


def render_no_data_statement(content: NoDataContent) -> bytes:
    """The statement's PDF: who asked, what was searched, what was found (nothing), and the evidence."""
    st = _styles()
    small, mono, body, h2 = st.small, st.mono, st.body, st.h2
    near = (f" {content.reviewed_near_matches} record(s) under other owners that name the person were shown to our "
            "reviewer, who confirmed none of them as the person's." if content.reviewed_near_matches else "")
    story = [
        _heading("Statement: no data held", content, st),
        Paragraph("In plain words", h2),
        Paragraph(f"None of the {len(content.models)} models we govern was trained on any record of the person who "
                  "made this request: there was nothing to remove, and nothing was changed." + near, body),
        Paragraph("Timeline", h2),
        _table([["Event", "Date (UTC)"]] + [list(row) for row in content.dates], [60 * mm, 110 * mm]),
        Paragraph("Models searched", h2),
        _table([["Model", "Kind", "Version searched (SHA-256)", "Training records", "The person's"]]
               + [[Paragraph(model.name, small), model.kind, Paragraph(model.version_sha256, mono),
                   str(model.training_records), "0"] for model in content.models],
               [38 * mm, 24 * mm, 66 * mm, 24 * mm, 18 * mm]),
        Paragraph("Limitations", h2),
        *[Paragraph(f"• {text}", small) for text in NO_DATA_LIMITATIONS],
        *_evidence(content, st),
    ]
    return _build(story, content, "Statement of no data held")

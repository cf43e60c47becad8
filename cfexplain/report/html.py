"""A self-contained HTML report of one or more audits (images embedded; no external files)."""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._version import __version__
from ..audit import COLUMNS, METRICS, AuditResult
from ..audit.columns import IG_TRUSTED_ERROR
from ..audit.evidence import CANNOT_TELL, EVIDENCE
from ..classifiers import Classifier
from ..counterfactual import latent_spread
from ..generators.base import Generator
from ..subspaces.core import SubspaceSet
from ..subspaces.specificity import is_low_specificity
from .figures import (DIFFERENCE_FULL_SCALE, difference_scale_bar, edit_strip, example_images, photo_panels,
                      png_data_uri, telling_examples, traversal)

__all__ = ["ReportSection", "render_report"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1d2329; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 2px solid #e3e7eb; padding-bottom: .2rem; margin-top: 2.2rem; }
.meta { color: #5b6670; margin-top: 0; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .92rem; }
th, td { border: 1px solid #d6dbe0; padding: .3rem .55rem; text-align: right; }
th { background: #f3f5f7; } td.name, th.name { text-align: left; font-weight: 600; }
tr.top td { background: #fff7e0; }
tr.weak td { color: #8a949d; }
.unfaithful { color: #a61b1b; font-weight: 600; } .unfaithful-photo { border-left: 4px solid #a61b1b; padding-left: .6rem; }
.wide { overflow-x: auto; max-width: 100%; }
.verdict { font-weight: 500; }
.bars { margin: .5rem 0 1rem; } .bar-row { display: flex; align-items: center; margin: .2rem 0; font-size: .9rem; }
.bar-label { width: 12rem; } .bar-track { flex: 1; background: #f0f2f4; height: .9rem; position: relative; }
.bar-fill { background: #3b7dd8; height: 100%; } .bar-fill.negative { background: #d8803b; }
.bar-value { width: 5rem; text-align: right; }
.strip { display: flex; gap: 1.2rem; flex-wrap: wrap; margin: .4rem 0 1.2rem; }
.example { display: flex; flex-wrap: wrap; gap: .3rem; border: 1px solid #e3e7eb; padding: .35rem; border-radius: 6px;
           max-width: 100%; box-sizing: border-box; }
figure { margin: 0; text-align: center; font-size: .78rem; color: #5b6670; }
figure img { display: block; image-rendering: pixelated; border-radius: 3px; }
.traversal { display: flex; gap: .25rem; margin: .4rem 0 1rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; border-radius: 6px; }
.note { color: #5b6670; font-size: .88rem; }
td.key { color: #8a949d; font-size: .8rem; text-align: left; }
summary h2 { display: inline-block; margin: 0; } #provenance { margin-top: 2.2rem; }
.legend { text-align: left; margin: .2rem 0 .6rem; } .legend img { height: 12px; width: 160px; }
"""

_COLUMNS = [c for c in COLUMNS if c.report and c.name != "semantic"]
"""The audit table's columns the report shows (their declarations: :mod:`cfexplain.audit.columns`)."""


_NOTE = ("Every semantic is tested face by face against {controls} random subspaces of its dimension, searched the same "
         "way on the same faces: effect is the probability that the semantic flips the decision with less image change "
         "than a random edit ({unit}; 0.5 = like random), with its 95 % interval and a p-value corrected for the number "
         "of semantics. Evidence needs a significant effect, a specific subspace and no other semantic that explains it "
         "away; cannot tell marks subspaces not specific enough for their result to mean anything. Semantics no paired "
         "test separates share a rank. Grey rows are verdicts of cannot tell; the specificity table below greys the "
         "subspaces too unspecific to be tested, which always get it. Hover a row for the reason of its verdict.")


@dataclass
class ReportSection:
    """One audit in a report: a title (e.g. the classifier and target), the audit and its classifier."""

    title: str
    audit: AuditResult
    classifier: Classifier | None = None


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if not pattern:
        return html.escape(str(value))
    try:
        return pattern.format(int(value) if pattern == "{:d}" else float(value))
    except (TypeError, ValueError):
        return html.escape(str(value))


def _headline(audit: AuditResult) -> str:
    """The answer in one line, each semantic with evidence marked."""
    text = html.escape(audit.headline())
    for name in audit.evidence:
        text = text.replace(html.escape(name), f'<span class="top-semantic">{html.escape(name)}</span>', 1)
    return text


def _summary(audit: AuditResult, anchor: str) -> str:
    table = audit.table
    columns = [c for c in _COLUMNS if c.name in table.columns and not table[c.name].isna().all()]
    head = "".join(f'<th title="{html.escape(c.meaning)}">{html.escape(c.label)}</th>' for c in columns)
    rows = []
    for _, row in table.iterrows():
        cells = "".join(f"<td>{_fmt(row[c.name], c.format)}</td>" for c in columns)
        css = {EVIDENCE: ' class="top"', CANNOT_TELL: ' class="weak"'}.get(row.get("verdict"), "")
        reason = html.escape(str(row.get("reason", "")))
        rows.append(f'<tr{css} data-semantic="{html.escape(row["semantic"])}" title="{reason}"><td class="name">'
                    f'{html.escape(row["semantic"])}</td>{cells}</tr>')
    return (f'<div class="wide"><table class="summary" id="{anchor}-summary"><thead><tr><th class="name">semantic</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _attribution(audit: AuditResult) -> str:
    table = audit.table.dropna(subset=["attribution"]).sort_values("attribution", ascending=False)
    if table.empty:
        return '<p class="note">No attribution (the joint search or Integrated Gradients was not run).</p>'
    method = audit.settings.get("attribution_method") or "integrated_gradients"
    shapley = method.startswith("shapley")
    error = audit.metrics.get("shapley_relative_delta" if shapley else "ig_relative_convergence_delta", float("nan"))
    bars = _bars(table)
    note = f'<p class="note">{html.escape(ATTRIBUTION_METHODS.get(method, method))}.</p>'
    if not error <= IG_TRUSTED_ERROR:
        name, remedy = (("the Shapley values' efficiency error", "Shapley values add up to the change by "
                         "construction: please report this audit") if shapley else
                        ("Integrated Gradients' completeness error", "Run the audit with more ig_steps (--ig-steps)"))
        return (f'<p class="unfaithful">Attribution not shown: {name} is {error:.2f} of the attributed change (trusted '
                f'up to {IG_TRUSTED_ERROR:g}), so the shares below do not add up to what the edits did. {remedy}.</p>'
                f'<details class="untrusted"><summary>show the untrusted shares</summary>{bars}</details>')
    return note + bars


ATTRIBUTION_METHODS = {
    "integrated_gradients": "Attribution: Integrated Gradients over the joint counterfactual's coefficients",
    "shapley_exact": "Attribution: exact Shapley values over the semantics (every subset of semantics queried; "
                     "a black-box audit)",
    "shapley_sampled": "Attribution: Shapley values over the semantics estimated from random orders (a black-box "
                       "audit of more semantics than exact values allow)",
}
"""How the report names each attribution method."""


def _bars(table: pd.DataFrame) -> str:
    """The attribution shares as horizontal bars, largest first."""
    largest = max(table["attribution"].abs().max(), 1e-9)
    rows = []
    for _, row in table.iterrows():
        share = float(row["attribution"])
        css = "bar-fill negative" if share < 0 else "bar-fill"
        rows.append(f'<div class="bar-row" data-semantic="{html.escape(row["semantic"])}"><span class="bar-label">'
                    f'{html.escape(row["semantic"])}</span><span class="bar-track"><span class="{css}" style="display:block;'
                    f'width:{abs(share) / largest * 100:.1f}%"></span></span><span class="bar-value">{share:.1%}</span></div>')
    return f'<div class="bars">{"".join(rows)}</div>'


def _unit(audit: AuditResult) -> str:
    """How the audit's edit sizes read: "RMS image change" or "σ"."""
    return "σ" if audit.settings.get("unit") == "latent" else " RMS image change"


def _specificity(subspaces: SubspaceSet) -> str:
    """The subspaces' specificity against random directions, where it was measured."""
    table = subspaces.specificity_table()
    if table.empty:
        return '<p class="note">The specificity of these subspaces was not measured when they were learned.</p>'
    rows = []
    for _, row in table.iterrows():
        css = ' class="weak"' if is_low_specificity(row["specificity"], row["low"]) else ""
        rows.append(f'<tr{css} data-semantic="{html.escape(row["semantic"])}"><td class="name">{html.escape(row["semantic"])}'
                    f'</td><td>{row["specificity"]:.2f}</td><td>{row["low"]:.2f}–{row["high"]:.2f}</td>'
                    f'<td>{row["target_gain"]:.2f}</td><td>{html.escape(row["keep_gains"])}</td></tr>')
    return ('<table class="specificity"><thead><tr><th class="name">semantic</th><th>specificity</th><th>90 % interval</th>'
            f'<th>target ×</th><th>kept criteria ×</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="note">Specificity: how much more the semantic\'s target moves, relative to its kept criteria, than '
            'under random directions of the same latent space (1 = no better than random), on faces apart from the '
            'learning ones. A ranking among semantics near 1 says little about which semantic the classifier uses.</p>')


def _examples(generator: Generator, section: ReportSection, count: int) -> str:
    audit = section.audit
    unit = _unit(audit)
    parts = []
    for semantic in audit.ranking():
        rows = telling_examples(audit, semantic, count)
        if rows.empty:
            continue
        blocks = [_strip(generator, section, rows.loc[[i]], unit) if rows.at[i, "flipped"]
                  else _unflipped(generator, audit, rows.loc[[i]]) for i in rows.index]
        parts.append(f'<div class="semantic-examples" data-semantic="{html.escape(semantic)}"><h3>{html.escape(semantic)}</h3>'
                     f'<div class="strip">{"".join(blocks)}</div></div>')
    return "".join(parts)


def _strip(generator: Generator, section: ReportSection, item: pd.DataFrame, unit: str) -> str:
    """A flipped item (a one-row table) along its edit (original, boundary, past it) and its difference map."""
    row = item.iloc[0]
    names = {0.0: "original", 1.0: "boundary"}
    figures = "".join(
        f'<figure><img alt="{names.get(t, f"{t:g}x")}" src="{png_data_uri(picture, size=112)}"><figcaption>'
        f'{names.get(t, f"{t:g}× the edit")}<br>{html.escape(reading)}</figcaption></figure>'
        for t, picture, reading in edit_strip(generator, section.audit, row, section.classifier))
    difference = example_images(generator, section.audit, item)["difference"][0]
    return (f'<div class="example">{figures}<figure><img alt="difference" src="{png_data_uri(difference, size=112)}">'
            f'<figcaption>difference at the boundary<br>minimal edit {row["min_edit"]:.3g}{html.escape(unit)}'
            '</figcaption></figure></div>')


def _difference_legend() -> str:
    """The difference maps' one scale, as a colour bar."""
    return ('<figure class="legend"><img alt="difference scale" src="'
            f'{png_data_uri(difference_scale_bar(), size=None)}"><figcaption>difference maps: 0 (black) to '
            f'{DIFFERENCE_FULL_SCALE:g} or more (white) mean change per colour channel, on the pixel range '
            '[−1, 1]; the same scale for every map</figcaption></figure>')


def _unflipped(generator: Generator, audit: AuditResult, item: pd.DataFrame) -> str:
    """An item the semantic did not flip (a one-row table): the original and where the search stopped."""
    row = item.iloc[0]
    images = example_images(generator, audit, item)
    return ('<div class="example">'
            f'<figure><img alt="original" src="{png_data_uri(images["original"][0])}">'
            f'<figcaption>original<br>target p = {row["p_before"]:.2f}</figcaption></figure>'
            f'<figure><img alt="end of the search" src="{png_data_uri(images["counterfactual"][0])}">'
            f'<figcaption>end of the search<br>p = {row["p_end"]:.2f}</figcaption></figure>'
            f'<figure><img alt="difference" src="{png_data_uri(images["difference"][0])}">'
            f'<figcaption>difference<br>not flipped within the budget (Δp {row["delta_prob"]:+.2f})</figcaption>'
            '</figure></div>')


def _photos(generator: Generator, section: ReportSection) -> str:
    """Per photo: photo, reconstruction, counterfactual, difference map, and what flipped it."""
    panels = photo_panels(generator, section.audit)
    if not panels:
        return ""
    unit = _unit(section.audit)
    blocks = []
    for panel in panels:
        row = panel["row"]
        verdict = (f"flipped by {row['subspace']} at {row['min_edit']:.3g}{unit}" if row is not None
                   else "no semantic flips it within the budget")
        flag = "" if panel["faithful"] else ('<p class="unfaithful">unfaithful: the classifier decides differently on '
                                             'the reconstruction; not counted in the tables</p>')
        figures = "".join(f'<figure><img alt="{label}" src="{png_data_uri(panel[key])}"><figcaption>{label}</figcaption></figure>'
                          for key, label in (("photo", "photo"), ("reconstruction", f"reconstruction<br>{panel['psnr']:.1f} dB"),
                                             ("counterfactual", "counterfactual"), ("difference", "difference")))
        css = "photo" if panel["faithful"] else "photo unfaithful-photo"
        blocks.append(f'<div class="{css}" data-photo="{html.escape(panel["name"])}"><h4>{html.escape(panel["name"])}</h4>'
                      f'<div class="example">{figures}</div><p>{html.escape(verdict)}</p>{flag}</div>')
    photos = section.audit.counterfactuals.photos
    skipped = "".join(f"<li>{html.escape(name)}: {html.escape(reason)}</li>" for name, reason in photos.skipped)
    return (f'<h3>Photos</h3><p>{html.escape(photos.summary())}.</p>{"".join(blocks)}'
            + (f'<p>Skipped photos:</p><ul>{skipped}</ul>' if skipped else ""))


def _baseline(audit: AuditResult) -> str:
    """The unconstrained latent-gradient control, under the table."""
    if audit.baseline is None or not len(audit.baseline):
        if audit.settings.get("black_box"):
            return ('<p class="note baseline">Unconstrained control: not available for a black-box audit (it searches '
                    'along each face\'s latent gradient, which queries do not give).</p>')
        return ""
    row = audit.baseline.iloc[0]
    return (f'<p class="note baseline">Unconstrained control (each face along its own latent gradient in the whole '
            f'space, not ranked): flip rate {_fmt(row.get("flip_rate"), "{:.0%}")}, median minimal edit '
            f'{_fmt(row.get("median_min_edit"), "{:.3g}")}{_unit(audit)}, side effect {_fmt(row.get("side_effect"), "{:.2f}")} '
            '(over the keep criteria of every semantic). A semantic that flips about as often at a similar edit, with '
            'a smaller side effect, explains the decision with less collateral change.</p>')


def _first_counted_face(audit: AuditResult) -> int:
    """The first face the audit's table counts: for photos, the first faithful one (unless the
    audit included the unfaithful ones)."""
    photos = audit.counterfactuals.photos
    if photos is None or audit.settings.get("include_unfaithful") or not bool(photos.faithful.any()):
        return 0
    return int(photos.faithful.nonzero()[0, 0])


def _traversals(generator: Generator, subspaces: SubspaceSet, section: ReportSection, steps: Sequence[float]) -> str:
    audit = section.audit
    face = _first_counted_face(audit)
    codes = audit.counterfactuals.codes[face:face + 1].to(generator.device)
    label = section.classifier.labels[-1] if section.classifier is not None else None
    photos = audit.counterfactuals.photos
    shown = f"the photo {photos.names[face]}" if photos is not None else f"face {face}"
    parts = [f'<p class="note">Each subspace traversed from {html.escape(shown)}, in steps of its latent spread.</p>']
    for semantic in audit.ranking():
        subspace = subspaces[semantic]
        if subspace.dim == 0:
            continue
        spread = latent_spread(generator, subspace, n_samples=500)
        pictures, probabilities = traversal(generator, subspaces, semantic, codes, section.classifier, tuple(steps), spread)
        figures = "".join(
            f'<figure><img alt="{t:+g} sigma" src="{png_data_uri(picture, size=112)}"><figcaption>{t:+g}σ'
            + (f"<br>p({html.escape(str(label))}) = {p:.2f}" if p is not None else "") + "</figcaption></figure>"
            for t, picture, p in zip(steps, pictures, probabilities))
        parts.append(f'<div class="semantic-traversal" data-semantic="{html.escape(semantic)}"><h3>{html.escape(semantic)}'
                     f'</h3><div class="traversal">{figures}</div></div>')
    return "".join(parts)


def _metrics(audit: AuditResult) -> str:
    declared = {metric.name: metric for metric in METRICS}
    rows = []
    for name, value in audit.metrics.items():
        metric = declared.get(name)
        label, meaning = (metric.label, metric.meaning) if metric is not None else (name, "")
        rows.append(f'<tr title="{html.escape(meaning)}"><td class="name">{html.escape(label)}</td>'
                    f'<td>{_fmt(value, "{:.3f}")}</td><td class="key">{html.escape(name)}</td></tr>')
    return f'<table class="metrics"><tbody>{"".join(rows)}</tbody></table>'


def render_report(generator: Generator, subspaces: SubspaceSet, sections: Sequence[ReportSection], *,
                  title: str = "cfexplain audit", examples: int = 3, traversal_steps: Sequence[float] = (-2, -1, 0, 1, 2),
                  provenance: Mapping[str, Any] | None = None, progress: bool = False) -> str:
    """The HTML of a report over one or more audits (one section each); ``progress`` shows a bar
    over the images it draws (each section's photos, examples and traversals).

    Contents per audit: the ranked summary table, the attribution ranking, for every semantic the
    most telling examples (original, counterfactual, difference map), subspace traversals of one
    face, the metrics; then the configuration and provenance (versions, seeds, checkpoint hashes).
    Every image is embedded as a PNG data URI: the file stands alone.
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<header><h1>{html.escape(title)}</h1><p class=\"meta\">cfexplain {__version__} · {now} · "
            f"{len(sections)} audit{'s' if len(sections) != 1 else ''} · latent space {html.escape(str(subspaces.space))}</p></header>"]
    navigation = []
    from tqdm.auto import tqdm

    bar = tqdm(total=3 * len(sections), desc="report images", unit="part", disable=not progress, leave=False)
    for number, section in enumerate(sections, start=1):
        anchor = f"audit-{number}"
        audit = section.audit
        photos = _photos(generator, section)
        bar.update()
        telling = _examples(generator, section, examples)
        bar.update()
        traversals = _traversals(generator, subspaces, section, traversal_steps)
        bar.update()
        navigation.append(f'<li><a href="#{anchor}">{html.escape(section.title)}</a></li>')
        settings = audit.settings
        body.append(
            f'<section class="audit" id="{anchor}"><h2>{html.escape(section.title)}</h2>'
            f'<p class="meta">target: {html.escape(audit.target)} · {settings.get("n")} faces · budget '
            f'{settings.get("budget")}{_unit(audit)} · seed {settings.get("seed")}</p>'
            f'<p class="headline"><strong>{_headline(audit)}.</strong></p>'
            f'<p class="verdict">{html.escape(audit.summary())}</p>'
            f'<h3>Which semantics the decision depends on</h3>{_summary(audit, anchor)}{_baseline(audit)}'
            f'<p class="note">{_NOTE.format(unit=_unit(audit).strip(), controls=settings.get("controls", 0))}</p>'
            f'<h3>How specific the subspaces are</h3>{_specificity(subspaces)}'
            f'<h3>Attribution (Integrated Gradients over all subspaces)</h3>{_attribution(audit)}'
            f'{photos}'
            f'<h3>Most telling counterfactuals</h3>{_difference_legend()}{telling}'
            f'<h3>Subspace traversals</h3>{traversals}'
            f'<h3>Metrics</h3>{_metrics(audit)}</section>')
    bar.close()
    config = {"report": {"cfexplain": __version__, "torch": torch.__version__, "created": now},
              "subspaces": subspaces.provenance, **(dict(provenance) if provenance else {}),
              "audits": [{"title": s.title, "settings": s.audit.settings, "provenance": s.audit.provenance} for s in sections]}
    body.insert(1, f'<nav><ul>{"".join(navigation)}</ul></nav>')
    body.append('<section id="provenance"><details><summary><h2>Configuration and provenance</h2></summary>'
                f'<pre>{html.escape(json.dumps(config, indent=1, default=str))}</pre></details></section>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body>{"".join(body)}</body></html>')

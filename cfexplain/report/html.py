"""A self-contained HTML report of one or more audits (images embedded; no external files)."""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._version import __version__
from ..audit import AuditResult
from ..classifiers import Classifier
from ..counterfactual import latent_spread
from ..generators.base import Generator
from ..subspaces.core import SubspaceSet
from .figures import example_images, photo_panels, png_data_uri, telling_examples, traversal

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
.example { display: flex; gap: .3rem; border: 1px solid #e3e7eb; padding: .35rem; border-radius: 6px; }
figure { margin: 0; text-align: center; font-size: .78rem; color: #5b6670; }
figure img { display: block; image-rendering: pixelated; border-radius: 3px; }
.traversal { display: flex; gap: .25rem; margin: .4rem 0 1rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; border-radius: 6px; }
.note { color: #5b6670; font-size: .88rem; }
"""

_COLUMNS = [("rank", "rank", "{:d}"), ("flip_rate", "flip rate", "{:.0%}"), ("median_min_edit", "median minimal edit", "{:.3f}"),
            ("sensitivity", "sensitivity", "{:.1f}"), ("random_flip_rate", "random-subspace flip rate", "{:.0%}"),
            ("random_median_min_edit", "random-subspace minimal edit", "{:.3f}"),
            ("random_sensitivity", "random-subspace sensitivity", "{:.1f}"),
            ("mean_delta_prob", "mean Δ target prob.", "{:+.3f}"), ("side_effect", "side effect", "{:.2f}"),
            ("other_heads_flipped", "other heads flipped", "{:.2f}"), ("attribution", "attribution (IG)", "{:.1%}"),
            ("directions", "directions", "{:d}")]


@dataclass
class ReportSection:
    """One audit in a report: a title (e.g. the classifier and target), the audit and its classifier."""

    title: str
    audit: AuditResult
    classifier: Classifier | None = None


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    try:
        return pattern.format(int(value) if pattern == "{:d}" else float(value))
    except (TypeError, ValueError):
        return html.escape(str(value))


def _summary(audit: AuditResult, anchor: str) -> str:
    table = audit.table.sort_values("rank")
    columns = [c for c in _COLUMNS if c[0] in table.columns and not table[c[0]].isna().all()]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in columns)
    rows = []
    for _, row in table.iterrows():
        cells = "".join(f"<td>{_fmt(row[key], pattern)}</td>" for key, _, pattern in columns)
        css = ' class="top"' if int(row["rank"]) == 1 else ""
        rows.append(f'<tr{css} data-semantic="{html.escape(row["semantic"])}"><td class="name">'
                    f'{html.escape(row["semantic"])}</td>{cells}</tr>')
    return (f'<div class="wide"><table class="summary" id="{anchor}-summary"><thead><tr><th class="name">semantic</th>'
            f'{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _attribution(audit: AuditResult) -> str:
    table = audit.table.dropna(subset=["attribution"]).sort_values("attribution", ascending=False)
    if table.empty:
        return '<p class="note">No attribution (the joint search or Integrated Gradients was not run).</p>'
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
        css = ' class="weak"' if row["low"] <= 1.0 or row["specificity"] < 1.5 else ""
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
    for semantic in audit.table.sort_values("rank")["semantic"]:
        rows = telling_examples(audit, semantic, count)
        if rows.empty:
            continue
        images = example_images(generator, audit, rows)
        blocks = []
        for i, (_, row) in enumerate(rows.iterrows()):
            state = (f"minimal edit {row['min_edit']:.3g}{unit}" if row["flipped"]
                     else f"not flipped within the budget (Δp {row['delta_prob']:+.2f})")
            after_p = row["p_after"] if row["flipped"] else row["p_end"]
            blocks.append(
                '<div class="example">'
                f'<figure><img alt="original" src="{png_data_uri(images["original"][i])}">'
                f'<figcaption>original<br>target p = {row["p_before"]:.2f}</figcaption></figure>'
                f'<figure><img alt="counterfactual" src="{png_data_uri(images["counterfactual"][i])}">'
                f'<figcaption>counterfactual<br>p = {after_p:.2f}</figcaption></figure>'
                f'<figure><img alt="difference" src="{png_data_uri(images["difference"][i])}">'
                f'<figcaption>difference<br>{html.escape(state)}</figcaption></figure></div>')
        parts.append(f'<div class="semantic-examples" data-semantic="{html.escape(semantic)}"><h3>{html.escape(semantic)}</h3>'
                     f'<div class="strip">{"".join(blocks)}</div></div>')
    return "".join(parts)


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
        return ""
    row = audit.baseline.iloc[0]
    return (f'<p class="note baseline">Unconstrained control (each face along its own latent gradient in the whole '
            f'space, not ranked): flip rate {_fmt(row.get("flip_rate"), "{:.0%}")}, median minimal edit '
            f'{_fmt(row.get("median_min_edit"), "{:.3g}")}{_unit(audit)}, side effect {_fmt(row.get("side_effect"), "{:.2f}")} '
            '(over the keep criteria of every semantic). A semantic that flips about as often at a similar edit, with '
            'a smaller side effect, explains the decision with less collateral change.</p>')


def _traversals(generator: Generator, subspaces: SubspaceSet, section: ReportSection, steps: Sequence[float]) -> str:
    audit = section.audit
    codes = audit.counterfactuals.codes[:1].to(generator.device)
    label = section.classifier.labels[-1] if section.classifier is not None else None
    parts = []
    for semantic in audit.table.sort_values("rank")["semantic"]:
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
    rows = "".join(f'<tr><td class="name">{html.escape(k)}</td><td>{_fmt(v, "{:.3f}")}</td></tr>'
                   for k, v in audit.metrics.items())
    return f'<table class="metrics"><tbody>{rows}</tbody></table>'


def render_report(generator: Generator, subspaces: SubspaceSet, sections: Sequence[ReportSection], *,
                  title: str = "cfexplain audit", examples: int = 3, traversal_steps: Sequence[float] = (-2, -1, 0, 1, 2),
                  provenance: Mapping[str, Any] | None = None) -> str:
    """The HTML of a report over one or more audits (one section each).

    Contents per audit: the ranked summary table, the attribution ranking, for every semantic the
    most telling examples (original, counterfactual, difference map), subspace traversals of one
    face, the metrics; then the configuration and provenance (versions, seeds, checkpoint hashes).
    Every image is embedded as a PNG data URI: the file stands alone.
    """
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<header><h1>{html.escape(title)}</h1><p class=\"meta\">cfexplain {__version__} · {now} · "
            f"{len(sections)} audit{'s' if len(sections) != 1 else ''} · latent space {html.escape(str(subspaces.space))}</p></header>"]
    navigation = []
    for number, section in enumerate(sections, start=1):
        anchor = f"audit-{number}"
        audit = section.audit
        navigation.append(f'<li><a href="#{anchor}">{html.escape(section.title)}</a></li>')
        top = audit.ranking()[0]
        settings = audit.settings
        body.append(
            f'<section class="audit" id="{anchor}"><h2>{html.escape(section.title)}</h2>'
            f'<p class="meta">target: {html.escape(audit.target)} · {settings.get("n")} faces · budget '
            f'{settings.get("budget")}{_unit(audit)} · seed {settings.get("seed")}</p>'
            f'<p>The decision reacts most easily to <strong class="top-semantic">{html.escape(top)}</strong>.</p>'
            f'<p class="verdict">{html.escape(audit.summary())}</p>'
            f'<h3>Which semantics flip the decision</h3>{_summary(audit, anchor)}{_baseline(audit)}'
            '<p class="note">Semantics are compared at equal image change (unless the audit was run in latent units). '
            'Flip rate: faces whose decision the semantic flips within the budget. Minimal edit: distance to the decision '
            f'boundary along the semantic ({_unit(audit).strip()}). Sensitivity: how far the decision moves per unit edit '
            'at the face (first order); it ranks the semantics when nothing flips. Random-subspace columns: the same '
            'search in a random subspace of the same dimension; a semantic not beyond them moves the decision no more '
            'than a generic edit does. Side effect: how much the semantic\'s keep-invariant criteria moved, relative to '
            'a random edit of the same size.</p>'
            f'<h3>How specific the subspaces are</h3>{_specificity(subspaces)}'
            f'<h3>Attribution (Integrated Gradients over all subspaces)</h3>{_attribution(audit)}'
            f'{_photos(generator, section)}'
            f'<h3>Most telling counterfactuals</h3>{_examples(generator, section, examples)}'
            f'<h3>Subspace traversals</h3>{_traversals(generator, subspaces, section, traversal_steps)}'
            f'<h3>Metrics</h3>{_metrics(audit)}</section>')
    config = {"report": {"cfexplain": __version__, "torch": torch.__version__, "created": now},
              "subspaces": subspaces.provenance, **(dict(provenance) if provenance else {}),
              "audits": [{"title": s.title, "settings": s.audit.settings, "provenance": s.audit.provenance} for s in sections]}
    body.insert(1, f'<nav><ul>{"".join(navigation)}</ul></nav>')
    body.append('<section id="provenance"><h2>Configuration and provenance</h2>'
                f'<pre>{html.escape(json.dumps(config, indent=1, default=str))}</pre></section>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>'
            f'<body>{"".join(body)}</body></html>')

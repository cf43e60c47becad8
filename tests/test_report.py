"""The HTML report and results.json: content, schema, and the page as a real browser shows it."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from PIL import Image

from browser import chromium, probe, screenshot
from cfexplain.audit import audit
from cfexplain.report import ReportSection, load_results_schema, write_report
from synthetic import planted_rule_setting


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    generator, classifier, subspaces, semantics = planted_rule_setting()
    result = audit(generator, classifier, subspaces, faces=12, seed=1, unit="latent", budget=4.0, semantics=semantics,
                   progress=False)
    folder = tmp_path_factory.mktemp("report")
    paths = write_report(folder, generator, subspaces, [ReportSection("left redness: flip", result, classifier)],
                         title="planted rule", config={"audit": {"faces": 12}})
    return paths, result


@pytest.fixture(scope="module")
def browser():
    return chromium()


def test_results_json_follows_the_schema(written):
    paths, result = written
    document = json.loads(paths["results"].read_text())
    jsonschema.validate(document, load_results_schema())
    assert document["audits"][0]["semantics"][0]["semantic"] == result.ranking()[0]
    broken = {**document, "format_version": "one"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load_results_schema())


def test_report_stands_alone(written):
    page = written[0]["report"].read_text()
    assert page.startswith("<!doctype html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert page.count('src="data:image/png;base64,') >= 9  # ≥ 1 strip of three + two traversals of five


def test_report_shows_the_controls(written):
    paths, result = written
    page = paths["report"].read_text()
    assert "How specific the subspaces are" in page and 'class="specificity"' in page
    assert 'data-semantic="left_colour"><td class="name">left_colour</td>' in page  # its specificity row
    assert result.summary() in page  # the answer in words, with its random control
    assert result.headline() == "Evidence that the decision depends on left_colour"
    assert "random flip rate" in page and "random minimal edit" in page and "sensitivity" in page
    assert ">verdict</th>" in page and ">evidence</td>" in page and ">effect</th>" in page
    # the most telling counterfactuals: a strip along the edit (original, boundary, past it) with
    # the classifier's reading of each, and the difference map
    strip = page[page.index('<div class="semantic-examples" data-semantic="left_colour">'):]
    strip = strip[:strip.index("</div></div>")]
    for label in ("original", "boundary", "1.5× the edit", "2× the edit", "difference at the boundary"):
        assert label in strip
    assert strip.count("red ") + strip.count("blue ") >= 4  # "red 0.73": the class and its probability, per image
    assert 'alt="difference scale"' in page and "the same scale for every map" in page
    assert "<details><summary><h2>Configuration and provenance</h2></summary>" in page  # collapsed
    assert "faces × semantics flipped" in page and "attribution error (IG completeness)" in page  # metric labels


def test_difference_maps_share_one_scale():
    """A 0.002 change stays near black; a change of the full scale or more is white."""
    import torch

    from cfexplain.report.figures import DIFFERENCE_FULL_SCALE, difference_map

    before = torch.zeros(2, 3, 4, 4)
    after = before.clone()
    after[0] += 0.002
    after[1] += DIFFERENCE_FULL_SCALE
    maps = difference_map(before, after)
    assert maps[0].max() <= 3 and (maps[1] == 255).all()


def test_an_attribution_that_fails_its_convergence_check_is_flagged(written):
    from cfexplain.report.html import _attribution

    _, result = written
    trusted = _attribution(result)
    assert ("Attribution not shown" in trusted) == (not result.metrics["ig_relative_convergence_delta"] <= 0.1)
    measured = result.metrics["ig_relative_convergence_delta"]
    result.metrics["ig_relative_convergence_delta"] = 0.518
    try:
        flagged = _attribution(result)
    finally:
        result.metrics["ig_relative_convergence_delta"] = measured
    assert "Attribution not shown" in flagged and "0.52" in flagged and "--ig-steps" in flagged


def test_report_in_headless_chromium(written, browser, tmp_path):
    paths, result = written
    found = probe(browser, paths["report"], tmp_path)
    assert found["images"] > 0 and found["decoded"] == found["images"] == found["rendered"]
    assert found["summary_rows"] == result.ranking()
    assert found["top"] == [result.ranking()[0]] == ["left_colour"]
    assert set(found["bars"]) == set(result.table.dropna(subset=["attribution"])["semantic"])
    assert "left redness: flip" in found["headings"] and "Configuration and provenance" in found["headings"]
    assert '"faces": 12' in found["provenance"] and '"torch"' in found["provenance"]
    assert not found["overflow"] and found["clipped"] == 0
    for width in (1024, 1400):  # the page fits; a table wider than the window scrolls inside its own box
        narrow = probe(browser, paths["report"], tmp_path, width=width)
        assert narrow["width"] == width and not narrow["overflow"] and narrow["clipped"] == 0, narrow

    shot = screenshot(browser, paths["report"], tmp_path / "report.png")
    picture = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert picture.shape == (2400, 1280, 3)
    dark_text = (picture.sum(axis=2) < 150).mean()
    assert 0.001 < dark_text < 0.2  # text was drawn, and the page is not one dark block
    highlighted = (np.abs(picture - np.array([0xFF, 0xF7, 0xE0])).sum(axis=2) < 6).sum()
    assert highlighted > 500  # the rank-1 row of the summary table is highlighted
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 200  # the face images were painted

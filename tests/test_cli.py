"""The ``cfexplain`` command line."""

from __future__ import annotations

import csv
import subprocess
import sys

from PIL import Image

from cfexplain import zoo
from cfexplain.cli import main
from cfexplain.errors import ModelFetchError


def test_demo_writes_its_outputs(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n", "4"]) == 0
    faces = Image.open(tmp_path / "faces.png")
    assert faces.mode == "RGB" and faces.size[0] > 64
    assert Image.open(tmp_path / "regions.png").size == faces.size
    rows = list(csv.DictReader(open(tmp_path / "predictions.csv")))
    assert len(rows) == 4
    for row in rows:
        assert abs(float(row["p_female"]) + float(row["p_male"]) - 1) < 1e-3
        assert 0 < float(row["expected_age"]) < 80 and float(row["lips_area"]) > 0
    assert "wrote" in capsys.readouterr().out


def test_model_fetch_failure_exits_2_with_a_message(tmp_path, monkeypatch, capsys):
    def no_network(*args, **kwargs):
        raise ModelFetchError("could not download gan_face_generate-1.1.1-py3-none-any.whl (test)")

    monkeypatch.setattr(zoo, "dcgan_faces", no_network)
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 2
    assert "could not download" in capsys.readouterr().err


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "cfexplain.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("cfexplain ")

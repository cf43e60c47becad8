"""The ``cfexplain`` command line."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image

from cfexplain.cli import main
from conftest import fixture_path


def test_demo_writes_its_outputs(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--n", "4"]) == 0
    grid = Image.open(tmp_path / "samples.png")
    assert grid.size[0] > 64 and grid.mode == "RGB"
    layout = json.loads((tmp_path / "style_layout.json").read_text())
    assert layout[0]["name"] == "b4.conv1"


def test_demo_with_a_checkpoint(tmp_path):
    path = fixture_path("stylegan2", "tf_res32.pkl")
    assert main(["demo", "--out", str(tmp_path), "--n", "2", "--checkpoint", str(path)]) == 0
    assert json.loads((tmp_path / "style_layout.json").read_text())[-1]["offset"] == 608


def test_bad_input_exits_2_with_a_message(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--checkpoint", str(tmp_path / "missing.pkl")]) == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "cfexplain.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("cfexplain ")

"""The documentation's code against the code: every fenced block of README.md and docs/*.md.

Cheap checks, in the default suite, so that a renamed flag, key or name fails a test rather than a
reader's first copy-paste:

* every ``cfexplain`` command line (in bash, YAML and plain blocks, ``torchrun -m cfexplain``
  included) parses with the command line's own parser, and its ``--fail-if`` gates parse;
* every TOML block is a configuration :func:`~cfexplain.cli.config.load_config` accepts (its
  sections, keys and types), and its ``fail_if`` gates parse;
* every Python block compiles, and every name it imports from cfexplain, or reads as
  ``cfexplain.<name>``, exists.

Running the blocks end to end (on the demo's outputs and the example photos) is the slow
``tests/test_docs_run.py``.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from cfexplain.cli import build_parser
from cfexplain.cli.config import load_config
from cfexplain.cli.gates import parse_gate

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMANDS = ("demo", "photos", "learn", "explain", "audit", "report")


def _blocks() -> list[tuple[str, str, str]]:
    """``(where, language, text)`` of every fenced block."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            line = text[:match.start()].count("\n") + 1
            found.append((f"{page.relative_to(ROOT)}:{line}", match.group(1), match.group(2)))
    return found


BLOCKS = _blocks()


def _command_lines(text: str) -> list[list[str]]:
    """The arguments after ``cfexplain`` of every command line in ``text`` (continuations joined)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    commands = []
    for line in joined.splitlines():
        for part in line.split(" #")[0].split("&&"):  # each command of a chain
            part = re.sub(r"^\s*(-\s+|run:\s+)", "", part).strip()
            found = re.search(r"(?:^|\s)(?:-m\s+)?cfexplain\s+(" + "|".join(COMMANDS) + r")\b(.*)$", part)
            if found and not part.startswith("pip "):
                commands.append([found.group(1), *shlex.split(found.group(2))])
    return commands


COMMAND_LINES = [(where, argv) for where, language, text in BLOCKS if language in ("bash", "yaml", "")
                 for argv in _command_lines(text)]


def test_the_docs_hold_command_lines_toml_and_python():
    """The checks below see the blocks (a changed fence would silently check nothing)."""
    languages = [language for _, language, _ in BLOCKS]
    assert len(COMMAND_LINES) >= 10 and languages.count("toml") >= 3 and languages.count("python") >= 15


@pytest.mark.parametrize("where, argv", COMMAND_LINES, ids=[f"{w} {' '.join(a[:1])}" for w, a in COMMAND_LINES])
def test_command_lines_in_the_docs_parse(where, argv):
    args = build_parser().parse_args(argv)  # an unknown flag or a bad value exits 2 here
    for gate in getattr(args, "fail_if", None) or []:
        parse_gate(gate)


TOML_BLOCKS = [(where, text) for where, language, text in BLOCKS if language == "toml"]


@pytest.mark.parametrize("where, text", TOML_BLOCKS, ids=[w for w, _ in TOML_BLOCKS])
def test_configurations_in_the_docs_load(where, text, tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(text)
    config = load_config(str(path))
    for section in ("audit", "explain"):
        for gate in config.get(section, {}).get("fail_if", []):
            parse_gate(gate)


PYTHON_BLOCKS = [(where, text) for where, language, text in BLOCKS if language == "python"]


def _names_used(tree: ast.AST) -> list[tuple[str, str]]:
    """``(module, name)`` of every name imported from cfexplain, or read as ``cfexplain.<name>``."""
    used = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cfexplain":
            used += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            used += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "cfexplain"]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cfexplain":
            used.append(("cfexplain", node.attr))
    return used


@pytest.mark.parametrize("where, text", PYTHON_BLOCKS, ids=[w for w, _ in PYTHON_BLOCKS])
def test_python_in_the_docs_compiles_and_names_what_exists(where, text):
    tree = ast.parse(text, filename=where)
    compile(tree, where, "exec")
    for module_name, name in _names_used(tree):
        module = importlib.import_module(module_name)
        assert not name or hasattr(module, name), f"{where}: {module_name} has no {name!r}"

"""Generate ``docs/api.md``, the Python API reference, from the package's docstrings.

Every public module's ``__all__`` is listed with each object's signature and docstring (classes
also with their public methods). Run it after changing a public docstring::

    python tools/api_docs.py            # rewrite docs/api.md
    python tools/api_docs.py --check    # exit 1 if docs/api.md is out of date (the tests do this)
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"
MODULES = (
    "cfexplain.generators", "cfexplain.analyzers", "cfexplain.zoo", "cfexplain.classifiers", "cfexplain.graphs", "cfexplain.criteria",
    "cfexplain.presets", "cfexplain.subspaces", "cfexplain.jacobian", "cfexplain.discovery", "cfexplain.counterfactual",
    "cfexplain.audit", "cfexplain.distributed", "cfexplain.photos", "cfexplain.trust", "cfexplain.report", "cfexplain.cli", "cfexplain.errors",
    "cfexplain.threads", "cfexplain.imaging",
)


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj)).replace("'", "")
    except (TypeError, ValueError):
        return ""


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else "(no docstring)"


def _quote(text: str) -> str:
    """A docstring as an indented block (keeps its layout, no Markdown surprises)."""
    return "\n".join("    " + line if line else "" for line in text.splitlines())


def _methods(cls) -> list[str]:
    parts = []
    for name, member in vars(cls).items():
        if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod, property))):
            continue
        target = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        if target.__doc__ is None:
            continue
        kind = "property" if isinstance(member, property) else "method"
        signature = "" if kind == "property" else _signature(target).replace("(self, ", "(").replace("(self)", "()")
        parts.append(f"* `{name}{signature}` ({kind})\n\n{_quote(_doc(target))}\n")
    return parts


def render() -> str:
    import cfexplain

    lines = ["# Python API reference", "",
             "Generated from the docstrings by `tools/api_docs.py`; do not edit by hand. The top-level package",
             "re-exports the most used names (`cfexplain.learn_subspaces`, `cfexplain.audit`, …).", "",
             f"Top level (`import cfexplain`, version {cfexplain.__version__}): "
             + ", ".join(f"`{name}`" for name in sorted(cfexplain.__all__)), ""]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", _quote(_doc(module)), ""]
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                lines += [f"### class `{module_name}.{name}{_signature(obj)}`", "", _quote(_doc(obj)), ""]
                lines += _methods(obj)
            elif inspect.isfunction(obj):
                lines += [f"### `{module_name}.{name}{_signature(obj)}`", "", _quote(_doc(obj)), ""]
            elif isinstance(obj, dict):
                lines += [f"### `{module_name}.{name}`: a mapping with keys " + ", ".join(f"`{k}`" for k in obj), ""]
            else:
                lines += [f"### `{module_name}.{name}` = `{obj!r}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that docs/api.md is current")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not DOCS.is_file() or DOCS.read_text() != text:
            print(f"{DOCS} is out of date: run python tools/api_docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(text)
    print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generate the column and metric tables of ``docs/audit.md`` from their declarations
(:mod:`cfexplain.audit.columns`), between the ``<!-- columns -->`` / ``<!-- metrics -->`` markers::

    python tools/audit_docs.py            # rewrite the tables in docs/audit.md
    python tools/audit_docs.py --check    # exit 1 if they are out of date (the tests do this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "audit.md"


def _metrics_table() -> str:
    from cfexplain.audit.columns import METRICS, WHEN

    lines = ["| metric | meaning | when |", "|---|---|---|"]
    lines += [f"| `{m.name}` | {m.meaning} | {WHEN[m.when]} |" for m in METRICS]
    return "\n".join(lines)


def render(text: str) -> str:
    """``text`` (docs/audit.md) with its generated tables brought up to date."""
    from cfexplain.audit.columns import markdown_table

    for name, table in (("columns", markdown_table()), ("metrics", _metrics_table())):
        pattern = re.compile(rf"(<!-- {name}:start -->\n)(?:.*?\n)?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{DOCS}: no <!-- {name}:start --> … <!-- {name}:end --> block")
        text = pattern.sub(lambda match: match.group(1) + table + "\n" + match.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/audit.md is out of date")
    args = parser.parse_args()
    sys.path.insert(0, str(DOCS.parents[1]))
    current = DOCS.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("docs/audit.md's tables are out of date: run python tools/audit_docs.py", file=sys.stderr)
            return 1
        return 0
    DOCS.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())

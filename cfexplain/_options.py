"""Settings fields that describe themselves: each field of a settings dataclass
(:class:`~cfexplain.counterfactual.SearchSettings`, :class:`~cfexplain.audit.AuditSettings`)
carries its help text, its value type and choices, and whether the command line offers it, so
that the command line's flags and configuration keys are made from the fields (a new setting is
one line)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

__all__ = ["setting", "cli_fields"]


def setting(default: Any, help: str, *, cli: bool = True, type: type | None = None,
            choices: Sequence[str] | None = None) -> Any:
    """A dataclass field with its ``help``, value ``type`` (default: the default's type),
    ``choices`` and whether the command line offers it (``cli``)."""
    kind = type if type is not None else default.__class__
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli, "type": kind,
                                                        "choices": tuple(choices) if choices else None})


def cli_fields(settings_class: type) -> list[dataclasses.Field]:
    """The fields of a settings dataclass that the command line offers as flags and config keys."""
    return [f for f in dataclasses.fields(settings_class) if f.metadata.get("cli")]

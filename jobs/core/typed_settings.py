"""Settings types: frozen dataclasses validated by pydantic that raise fairshelf's own errors.

``settings_dataclass(error, title)`` turns a class into a frozen pydantic dataclass that
refuses unknown keys. Built directly or through ``dataclasses.replace``, an invalid one
raises ``error`` (``ConfigError``, ``ModelError``), never pydantic's ``ValidationError``,
with one line per problem naming the setting and what is allowed::

    invalid configuration: [model] factors: should be greater than 0 (got 0)

Nested in another settings type, it is validated as part of that one and its problems are
named from there (``[section] key``). ``dataclasses.replace``, ``fields`` and ``asdict``
work as on any dataclass.

Field rules are pydantic constraints (``Literal``, ``Field(ge=...)``); a rule between
fields is a ``model_validator(mode="after")`` raising ``ValueError`` with one
``key: problem`` line per problem (``[section] key: problem`` for a rule between sections).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass

SettingsType = TypeVar("SettingsType", bound=type)


def settings_dataclass(
    error: Callable[[str], Exception], title: str, section: str = ""
) -> Callable[[SettingsType], SettingsType]:
    """The decorator of a settings type; ``section`` names it in messages (``[section] key``)."""
    where = (section,) if section else ()

    def decorate(cls: SettingsType) -> SettingsType:
        cls = dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)
        validated_init = cls.__init__

        @functools.wraps(validated_init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                validated_init(self, *args, **kwargs)
            except ValidationError as exc:
                lines = problem_lines(exc, type(self), where)
                shown = f" {lines[0]}" if len(lines) == 1 else "".join(f"\n  {line}" for line in lines)
                raise error(f"{title}:{shown}") from None

        cls.__init__ = __init__
        return cls

    return decorate


def problem_lines(exc: ValidationError, root: type, where: tuple[str, ...] = ()) -> list[str]:
    """One readable line per problem of ``exc``, raised validating ``root`` (itself the
    section ``where`` of a larger settings type, if given)."""
    lines = []
    for problem in exc.errors(include_url=False):
        loc, kind = problem["loc"], problem["type"]
        name = _name(root, where, loc)
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            known = ", ".join(_fields(_type_at(root, loc[:-1])))
            lines.append(f"{name}: unknown setting; known here: {known or 'none'}")
        elif kind == "value_error" and _type_at(root, loc) is not None:
            # a rule between the fields of a settings type: "key: problem" lines
            for line in str(problem["ctx"]["error"]).splitlines():
                lines.append(line if line.startswith("[") or not name else f"{name} {line}")
        elif kind == "value_error":  # a field's own validator, whose message shows the value
            lines.append(f"{name}: {problem['ctx']['error']}")
        else:
            value = problem.get("input")
            got = "" if isinstance(value, dict) or dataclasses.is_dataclass(value) else f" (got {value!r})"
            lines.append(f"{name}: {problem['msg'].removeprefix('Input ')}{got}")
    return lines


def _name(root: type, where: tuple[str, ...], loc: tuple[Any, ...]) -> str:
    """``[section] key``, ``[section]``, ``key``, or ``key[2]`` for an item of a list."""
    sections, rest, current = list(where), "", root
    for part in loc:
        current = _settings_type(current, part) if current is not None and not rest else None
        if current is not None:
            sections.append(str(part))
        else:
            rest += f"[{part}]" if isinstance(part, int) else f".{part}" if rest else str(part)
    head = f"[{'.'.join(sections)}]" if sections else ""
    return " ".join(x for x in (head, rest) if x)


def _type_at(root: type, loc: tuple[Any, ...]) -> type | None:
    """The settings type at ``loc`` under ``root``, or None where ``loc`` names a value."""
    current: type | None = root
    for part in loc:
        current = _settings_type(current, part) if current is not None else None
    return current


def _settings_type(cls: type, name: Any) -> type | None:
    field = getattr(cls, "__pydantic_fields__", {}).get(name)
    annotation = getattr(field, "annotation", None)
    return annotation if isinstance(annotation, type) and dataclasses.is_dataclass(annotation) else None


def _fields(cls: type | None) -> list[str]:
    return sorted(getattr(cls, "__pydantic_fields__", {})) if cls is not None else []

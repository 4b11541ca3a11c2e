"""Rendering of fairshelf's documents for people: the run report (HTML), the model card
(Markdown) and the evaluation table (Markdown).

- ``template_environment(package)``: the Jinja2 environment of one package's
  ``templates/`` folder, loaded as package data (``jinja2.PackageLoader``, so an installed
  wheel works as well as the source tree). Templates named ``*.html.j2`` are autoescaped;
  ``*.md.j2`` are not (Markdown has no escaping of its own to apply).
- ``render_table(rows, columns, markup)``: the one table renderer, a Markdown or an HTML
  table; every environment has it as the global ``table``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

TEMPLATES_FOLDER = "templates"
TableMarkup = Literal["markdown", "html"]


def plain_text(value: Any) -> str:
    """The default cell text: ``str(value)``."""
    return str(value)


def render_table(
    rows: Iterable[Mapping[str, Any] | Sequence[Any]],
    columns: Sequence[str],
    markup: TableMarkup = "markdown",
    *,
    cell: Callable[[Any], str] = plain_text,
    missing: str = "",
) -> str:
    """A table of ``rows`` under the headings ``columns``, in that order.

    A row is a mapping (its value for each column; a column it lacks is a missing cell) or a
    sequence of one value per column. A cell's text is ``cell(value)``; a None cell is
    ``missing``. Markdown: a GitHub-flavoured pipe table, ``|`` in a cell escaped and line
    breaks made spaces. HTML: a ``<table>`` with every heading and cell escaped, returned as
    ``Markup`` so an autoescaping template inserts it as it is.
    """
    if not columns:
        raise ValueError("a table needs at least one column")
    if markup not in ("markdown", "html"):
        raise ValueError(f"unknown table markup {markup!r}: use 'markdown' or 'html'")
    body = [[missing if value is None else cell(value) for value in _row_values(row, columns)] for row in rows]
    if markup == "html":
        return _html_table(columns, body)
    return _markdown_table(columns, body)


def _row_values(row: Mapping[str, Any] | Sequence[Any], columns: Sequence[str]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(column) for column in columns]
    values = list(row)
    if len(values) != len(columns):
        raise ValueError(f"a row of {len(values)} values for {len(columns)} columns ({', '.join(columns)}): {values!r}")
    return values


def _markdown_cell(text: str) -> str:
    return " ".join(str(text).replace("|", "\\|").splitlines())


def _markdown_table(columns: Sequence[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_markdown_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_markdown_cell(text) for text in cells) + " |" for cells in body]
    return "\n".join(lines)


def _html_table(columns: Sequence[str], body: list[list[str]]) -> Markup:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{escape(text)}</td>" for text in cells) + "</tr>\n" for cells in body)
    return Markup(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}</tbody>\n</table>")


def template_environment(
    package: str,
    *,
    cell: Callable[[Any], str] = plain_text,
    missing: str = "",
    filters: Mapping[str, Callable[..., Any]] | None = None,
) -> Environment:
    """The environment of ``package``'s ``templates/`` folder (module doc).

    ``table`` (``render_table``) takes ``cell`` and ``missing`` as its defaults, the way the
    package formats values; ``filters`` are added to Jinja's. An undefined name in a
    template is an error, not an empty string. Block tags on a line of their own leave no
    blank line behind, and a template's last newline is kept.
    """
    environment = Environment(
        loader=PackageLoader(package, TEMPLATES_FOLDER),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.globals["table"] = functools.partial(render_table, cell=cell, missing=missing)
    environment.filters.update(filters or {})
    return environment

"""The one table renderer (jobs.core.render.render_table) and the template environments."""

from __future__ import annotations

import re

import pytest
from markupsafe import Markup

from jobs.core.render import render_table, template_environment
from jobs.orchestration.report import render_report

RUN = {"run_id": "r1", "run_date": "2026-11-25", "status": "succeeded", "failed_stage": None,
       "message": None, "started_at": "s", "finished_at": "f", "code_version": "c",
       "config_hash": "h", "key_fingerprint": "k", "model_version": "m"}


def test_markdown_table_follows_the_columns_not_the_row_order():
    rows = [{"b": 2, "a": 1}, {"a": "x", "b": "y"}]
    assert render_table(rows, ["a", "b"]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| x | y |"
    assert render_table(rows, ["b", "a"], "markdown") == "| b | a |\n|---|---|\n| 2 | 1 |\n| y | x |"


def test_markdown_none_and_absent_cells_are_missing_never_none():
    rows = [{"a": None}, [None, 3]]
    assert render_table(rows, ["a", "b"]) == "| a | b |\n|---|---|\n|  |  |\n|  | 3 |"
    assert render_table(rows, ["a", "b"], missing="-") == "| a | b |\n|---|---|\n| - | - |\n| - | 3 |"


def test_markdown_cells_cannot_break_the_table():
    table = render_table([["a|b", "two\nlines"]], ["x|y", "z"])
    assert table.splitlines() == ["| x\\|y | z |", "|---|---|", "| a\\|b | two lines |"]


def test_cell_formats_values_but_not_none():
    seen = []

    def cell(value):
        seen.append(value)
        return f"{value:.2f}"

    assert render_table([[0.12345, None]], ["p", "q"], cell=cell, missing="-").splitlines()[2] == "| 0.12 | - |"
    assert seen == [0.12345]


def test_html_table_escapes_headings_and_cells():
    html = render_table([{"name": "<script>alert(1)</script>", "n<": 'a & "b"'}], ["name", "n<"], "html")
    assert isinstance(html, Markup)  # an autoescaping template inserts it as it is
    assert "<script>" not in html
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in html
    assert "<th>n&lt;</th>" in html and "<td>a &amp; &#34;b&#34;</td>" in html


def test_html_table_column_order_and_none_cells():
    html = render_table([{"c": 3, "a": 1, "b": None}, [4, None, 6]], ["a", "b", "c"], "html", missing="n/a")
    assert re.findall(r"<th>(.*?)</th>", html) == ["a", "b", "c"]
    assert re.findall(r"<tr>(.*?)</tr>", html)[1:] == [
        "<td>1</td><td>n/a</td><td>3</td>",
        "<td>4</td><td>n/a</td><td>6</td>",
    ]
    assert html.startswith("<table>") and html.endswith("</table>") and html.count("<tbody>") == 1


def test_bad_tables_are_refused():
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        render_table([[1, 2]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="at least one column"):
        render_table([], [])
    with pytest.raises(ValueError, match="unknown table markup 'latex'"):
        render_table([], ["a"], "latex")


def test_html_templates_are_escaped_markdown_templates_are_not():
    environment = template_environment("jobs.orchestration")
    assert environment.autoescape("report.html.j2") is True
    assert environment.autoescape("model_card.md.j2") is False
    assert environment.list_templates() == ["audit.html.j2", "report.html.j2"]  # package data, found


def test_the_report_escapes_values_once():
    run = {**RUN, "status": "failed", "failed_stage": "audit", "message": "<script>x</script> & more"}
    summaries = [{"stage": "train", "seconds": 3.04, "metrics": {"title": "<b>Amélie</b>"}, "outputs": {}}]
    html = render_report(run, summaries, [])
    assert "<script>" not in html and "<b>" not in html
    assert ": &lt;script&gt;x&lt;/script&gt; &amp; more</p>" in html
    assert "<td>&lt;b&gt;Amélie&lt;/b&gt;</td>" in html and "&amp;lt;" not in html  # not escaped twice
    assert "<h3>train (3.0 s)</h3>" in html

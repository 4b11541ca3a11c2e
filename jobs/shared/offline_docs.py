"""Great Expectations Data Docs that work offline (issue 18, item 9).

GE 1.x pages load Bootstrap, bootstrap-table, jQuery, Font Awesome and Vega from CDNs; the
package ships none of them (only its own ``static/styles`` and fonts, which the site copies
beside the pages and links relatively). Offline those pages are unstyled, and the index is
blank: its two tables (validation results, expectation suites) are drawn by bootstrap-table
from data inside a script.

So after ``build_data_docs`` every page is rewritten (``offline_page``): the CDN ``<link>``
tags go, every ``<script>`` goes (they only add sorting, filtering, clickable rows and Vega
charts; GE draws no Vega chart for fairshelf's suites), the index's tables are written out
as plain HTML tables from that same data, with a link per row, and a small inline stylesheet
makes tables readable. The pages then need nothing but the files beside them.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref=[\"']https?://[^>]*>\s*", re.I)
SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>\s*", re.I | re.S)
TABLE_DATA = re.compile(
    r"\$\('#(?P<id>[\w-]+)'\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*"
    r"columns:\s*(?P<columns>\[.*?\]),\s*data:\s*(?P<data>\[.*?\]),\s*toolbar:", re.S)
# GE's logo, from its S3 bucket; the same image is in the site's static/images.
REMOTE_IMAGE = re.compile(r"src=\"https://great-expectations-web-assets\.[^\"]*?/(?P<name>[\w.-]+?)(\?[^\"]*)?\"")
LINK_FIELD = "_table_row_link_path"

OFFLINE_STYLE = """<style>
/* fairshelf: Data Docs without their CDN stylesheets (jobs.shared.offline_docs) */
body{font-family:system-ui,sans-serif;margin:1rem 2rem;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.5rem 0 1rem;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}pre,code{white-space:pre-wrap}img{max-width:100%}
.text-success{color:#176b1d}.text-danger{color:#a11}.text-warning{color:#8a5a00}
.invisible,.modal,.sr-only,footer,button[onclick]{display:none}nav.navbar{height:auto!important}.fas,.far,.fa{font-style:normal}
.fa-check-circle::before{content:"\\2714"}.fa-times::before{content:"\\2718"}
nav ul,.list-group{list-style:none;padding-left:0}
</style>
"""


def static_table(columns: list[dict[str, Any]], data: list[dict[str, Any]]) -> str:
    """A bootstrap-table's columns and rows as a plain table body; a row's link (GE's
    ``_table_row_link_path``) on its first cell. Cells are GE's own rendered HTML, as
    bootstrap-table would insert them."""
    head = "".join(f"<th>{c.get('title', c['field'])}</th>" for c in columns)
    rows = []
    for row in data:
        cells = [str(row.get(c["field"], "")) for c in columns]
        if row.get(LINK_FIELD) and cells:
            cells[0] = f'<a href="{row[LINK_FIELD]}">{cells[0]}</a>'
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f"<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>"


def offline_page(html: str, static: str = "static") -> str:
    """One Data Docs page without CDN assets or scripts, its script-drawn tables written out
    (module doc); ``static`` is the site's static folder relative to the page."""
    for found in TABLE_DATA.finditer(html):
        body = static_table(ast.literal_eval(found["columns"]), ast.literal_eval(found["data"]))
        empty = re.compile(r"(<table\b[^>]*\bid=\"" + re.escape(found["id"]) + r"\"[^>]*>)\s*(</table>)", re.S)
        html = empty.sub(lambda m: m[1] + body + m[2], html, count=1)
    html = SCRIPT.sub("", REMOTE_LINK.sub("", html))
    html = REMOTE_IMAGE.sub(lambda m: f'src="{static}/images/{m["name"]}"', html)
    return html.replace("</head>", OFFLINE_STYLE + "</head>", 1)


def make_offline(docs_dir: str | Path) -> int:
    """Rewrite every page under ``docs_dir`` with ``offline_page``; returns how many."""
    root = Path(docs_dir)
    pages = sorted(root.rglob("*.html"))
    for page in pages:
        static = Path(os.path.relpath(root / "static", page.parent)).as_posix()
        page.write_text(offline_page(page.read_text(encoding="utf-8"), static), encoding="utf-8")
    return len(pages)

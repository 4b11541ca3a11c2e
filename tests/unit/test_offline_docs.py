"""Great Expectations Data Docs readable offline (issue 18, item 9): no CSS or JavaScript
from a CDN, the index's tables written out (``jobs.shared.offline_docs``)."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from jobs.shared.offline_docs import offline_page

REMOTE_ASSET = re.compile(r"<(?:link|script)\b[^>]*(?:href|src)=[\"']https?://", re.I)

# The shape of GE 1.x's index page (site_index_page_renderer + bootstrap-table), cut down.
INDEX = """<html><head>
<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>
<link rel="stylesheet" href="../static/styles/data_docs_default_styles.css" type="text/css">
<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>
</head><body>
<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=20261130T01Z">
<table
  id="section-1-content-block-2-2-body-table"
  data-toggle="table"
>
</table>
<script>
  $('#section-1-content-block-2-2-body-table').bootstrapTable(
    Object.assign(
      {
        columns: [{'field': 'expectation_suite_name', 'title': 'Expectation Suites', 'sortable': 'true'}],
        data: [{'expectation_suite_name': 'volume', '_table_row_link_path': 'expectations/volume.html'}],
        toolbar: '#section-1-content-block-2-2-body-table-toolbar'
      },
      {'search': 'true'}
    )
  );
</script>
</body></html>"""


def test_offline_page_has_no_remote_asset_and_writes_the_table_out():
    page = offline_page(INDEX, "../static")
    assert not REMOTE_ASSET.search(page) and "<script" not in page
    assert 'href="../static/styles/data_docs_default_styles.css"' in page  # GE's own, beside the page
    assert '<th>Expectation Suites</th>' in page
    assert '<tr><td><a href="expectations/volume.html">volume</a></td></tr>' in page
    assert 'src="../static/images/logo-long.png"' in page
    assert "<style>" in page.split("</head>")[0]


@pytest.mark.spark
def test_built_data_docs_load_nothing_from_a_cdn(spark, tmp_path):
    """Real Data Docs, built by GE for a real suite: every page is self-contained."""
    from jobs.shared.expectation_suites import Validator

    validator = Validator(str(tmp_path / "quality"))
    frame = pd.DataFrame({"landing_rows": [100], "trailing_median": [None]})
    validator.validate(frame, "volume", {"volume_min_rows": 50, "volume_max_rows": 1000})
    index = validator.build_docs()
    pages = sorted((tmp_path / "quality").rglob("*.html"))
    assert len(pages) >= 3  # index, the suite, the validation
    for page in pages:
        html = page.read_text()
        assert not REMOTE_ASSET.search(html), page
        for asset in re.findall(r"(?:href|src)=\"([^\"#?]+\.(?:css|png))\"", html):
            assert (page.parent / asset).is_file(), (page, asset)  # local assets are there
    html = open(index).read()
    validation = next(p for p in pages if "validations" in p.parts)
    assert f'<a href="{validation.relative_to(tmp_path / "quality").as_posix()}"' in html.replace("%3A", ":")
    assert '<a href="expectations/volume.html">volume</a>' in html

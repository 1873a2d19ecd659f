"""`morl report`: a static HTML site of a runs folder's leaderboards, fronts and learning curves.

``collect`` reads the results store and the run folders (the tables are `morl.leaderboard`'s own aggregation),
``figures`` draws the interactive plotly figures, ``site`` writes the pages. The folder opens from disk with no
server and no network: plotly's JS is bundled into it once.
"""

from __future__ import annotations

from pathlib import Path

from morl.report.collect import ReportData, collect
from morl.report.site import render_site, write_site

__all__ = ["ReportData", "build_report", "collect", "render_site", "write_site"]


def build_report(
    runs_dir: str | Path, out: str | Path, suite: str | None = None, metrics: list[str] | None = None
) -> Path:
    """Write the report of ``runs_dir`` (only ``suite``'s runs when given) to the folder ``out``; returns it."""
    return write_site(render_site(collect(runs_dir, suite, metrics)), out)

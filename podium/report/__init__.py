"""Reports: one static HTML page from a run (or `podium cv`) directory's files.

Reads only what training and prediction left on disk (configs/, logs/*.csv, checkpoints/
_metrics.json, overlays/, metrics.json, timings.json, cv_summary.csv); imports no model code.
`write_report(RUN_DIR)` is what `podium report` runs.
"""

from podium.report.build import build_report, write_report

__all__ = ["build_report", "write_report"]

"""Reports read only stored results, so they work on a finished study, a running one, or another machine's."""

from nas.report.html import write_report
from nas.report.table import front_table

__all__ = ["front_table", "write_report"]

"""Metrics of the application."""

from app.metrics.em import (
    EM_METRICS,
    cell_segmentation,
    em_metrics,
    em_metrics_table,
    to_binary_mask,
    write_em_report,
)

# em_metrics_table, to_binary_mask, write_em_report
from app.metrics.handlers import EMMetricsHandler

__all__ = [
    "EM_METRICS",
    "EMMetricsHandler",
    "cell_segmentation",
    "em_metrics",
    "em_metrics_table",
    "to_binary_mask",
    "write_em_report",
]

"""Metrics of the application."""

from app.metrics.em import (
    EM_METRICS,
    ISBI_THRESHOLDS,
    cell_segmentation,
    em_metrics,
    em_metrics_table,
    isbi_pixel_error,
    pixel_f_counts,
    to_binary_mask,
    write_em_report,
)
from app.metrics.handlers import EMMetricsHandler

__all__ = [
    "EM_METRICS",
    "EMMetricsHandler",
    "ISBI_THRESHOLDS",
    "cell_segmentation",
    "em_metrics",
    "em_metrics_table",
    "isbi_pixel_error",
    "pixel_f_counts",
    "to_binary_mask",
    "write_em_report",
]

"""Metrics of the application."""

from app.metrics.em import EM_METRICS, em_metrics, em_metrics_table, to_binary_mask, write_em_report

__all__ = ["EM_METRICS", "em_metrics", "em_metrics_table", "to_binary_mask", "write_em_report"]

"""Datasets: demo generators, datalists and splits, input checks, downloads."""

from app.data.demo import ensure_demo
from app.data.loader import ThreadDataLoader
from app.data.prepare import evaluation_datalist, evaluation_dir, prepare_datalist, resolve_dataset_dir

__all__ = [
    "ThreadDataLoader",
    "ensure_demo",
    "evaluation_datalist",
    "evaluation_dir",
    "prepare_datalist",
    "resolve_dataset_dir",
]

"""Datasets: demo generators, datalists and splits, input checks, downloads."""

from app.data.prepare import prepare_datalist, resolve_dataset_dir

__all__ = ["prepare_datalist", "resolve_dataset_dir"]

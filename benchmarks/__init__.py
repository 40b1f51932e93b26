"""Benchmarks: the project's CT pipelines against the MONAI model-zoo spleen recipe, in one process.

Each benchmark is ``python -m benchmarks.<name> [--quick] [--device cpu|cuda]`` and writes
``benchmarks/results/<name>.json`` plus the summary table ``benchmarks/results/results.md``;
``python -m benchmarks.run`` runs them all. See ``benchmarks/README.md``.
"""

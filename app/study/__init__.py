"""Multi-seed studies: several short trainings of one bundle with one factor changed, and their report.

``python -m app study <name>`` reads ``configs/studies/<name>.json`` (:mod:`app.study.config`), runs
each arm and seed as a ``monai.bundle`` training (:mod:`app.study.runner`), reads the runs' histories
back (:mod:`app.study.aggregate`), judges the study's claims (:mod:`app.study.verdicts`) and writes
``docs/study/<name>.md`` with its figures (:mod:`app.study.report`, :mod:`app.study.plots`).

The submodules are imported one by one (nothing is re-exported here), so that listing the studies for
the command-line help does not load torch.
"""

"""Artifacts on disk: ``evaluate`` and ``run_eval`` write predictions, metrics and the error gallery under a
weights folder's ``eval/``; :mod:`~covidviz.evaluation.artifacts.saved` reads them back for the pages."""

"""Evaluation artifacts for the evaluation-page tests.

The pages read ``weights/eval/`` as written by ``python -m covidviz evaluate``. Tests run against the
folder that ``COVIDVIZ_WEIGHTS`` names, else the real ``weights/``; only when neither holds
``eval/metrics.json`` yet (the shipped model is still training) do they build a provisional set: a
tiny real training run on the toy collection, then the real ``evaluate`` (about ten seconds).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import WEIGHTS


def configured_weights() -> Path:
    """The folder the tests should use: ``COVIDVIZ_WEIGHTS`` if set, else the repository's ``weights/``."""
    return Path(os.environ.get("COVIDVIZ_WEIGHTS", WEIGHTS))


def has_eval_artifacts(weights: Path) -> bool:
    return (weights / "eval" / "metrics.json").is_file() and (weights / "model.json").is_file()


def build_toy_weights(root: Path) -> Path:
    """Train two epochs at 64 px on the toy collection, export and evaluate: real artifacts, toy model."""
    import torch

    from covidviz.evaluation.artifacts.evaluate import evaluate
    from covidviz.training.config import TrainConfig
    from covidviz.training.train import train
    from tests.toy_data import make_toy_collection

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a training job may be sharing the machine
    try:
        data = make_toy_collection(root / "cxr")
        weights = root / "weights"
        train(TrainConfig(data_dir=str(data), run_dir=str(root / "run"), size=64, epochs=2, batch_size=8,
                          fast=False, export_dir=str(weights), threads=1))
        evaluate(data, weights, n_boot=50)
    finally:
        torch.set_num_threads(threads)
    return weights


@pytest.fixture(scope="session")
def eval_weights(tmp_path_factory) -> Path:
    """A weights folder with ``eval/`` artifacts: the configured one if it has them, else a toy one."""
    weights = configured_weights()
    if has_eval_artifacts(weights):
        return weights
    if "COVIDVIZ_WEIGHTS" in os.environ:
        pytest.fail(f"COVIDVIZ_WEIGHTS={weights} holds no eval/metrics.json: run `python -m covidviz evaluate`")
    return build_toy_weights(tmp_path_factory.mktemp("eval_artifacts"))

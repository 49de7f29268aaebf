"""Command-line tools for ML engineers: ``python -m covidviz train|evaluate|predict|bench|...``.
"""

from covidviz._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    cli=("main",),
    predict=("run_predict",),
    bench=("run_bench",),
    compare_runs=("compare_train",),
    compare_build=("build_comparison",),
)

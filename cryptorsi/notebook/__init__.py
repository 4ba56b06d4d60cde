"""cryptorsi in Jupyter: the tuning panel, widgets, figures and the results table.

>>> import cryptorsi as cr
>>> cr.ui(source="sample", top_n_coins=100, db_path="tuning.db")   # doctest: +SKIP  the tuning panel
>>> from cryptorsi.notebook import plots
>>> plots.correlation_bars(result)                                  # doctest: +SKIP  a matplotlib Figure
>>> from cryptorsi.notebook import result_html, results_frame       # the results table, HTML or DataFrame

In a notebook, ``cr.run_analysis`` and ``cr.Runner(...).start()`` show a live status widget and then
the results in the cell that started them (see :mod:`cryptorsi.agents.display`). The submodules are
imported on first use, so ``import cryptorsi`` stays free of matplotlib and ipywidgets.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ui", "plots", "widgets", "report", "kernel", "panel", "result_html", "results_frame", "in_notebook"]

_SUBMODULES = ("plots", "widgets", "report", "kernel", "panel")


def ui(config=None, **overrides: Any):
    """The tuning panel: controls for the config, Run / Stop, the results table and figures.

    ``config`` and keyword overrides as for ``run_analysis``. See :class:`cryptorsi.notebook.panel.TuningPanel`.
    """
    from cryptorsi.notebook.panel import TuningPanel

    return TuningPanel(config, **overrides)


def result_html(result, **options: Any) -> str:
    """The result as an HTML table (selected pairs highlighted); see :func:`cryptorsi.notebook.report.result_html`."""
    from cryptorsi.notebook.report import result_html as render

    return render(result, **options)


def results_frame(result, **options: Any):
    """The result as a sorted DataFrame; see :func:`cryptorsi.notebook.report.results_frame`."""
    from cryptorsi.notebook.report import results_frame as frame

    return frame(result, **options)


def in_notebook() -> bool:
    """True in a Jupyter kernel."""
    from cryptorsi.notebook.kernel import in_notebook as detect

    return detect()


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"cryptorsi.notebook.{name}")
    raise AttributeError(f"module 'cryptorsi.notebook' has no attribute {name!r}")

"""Hydra finds sweepers only in the ``hydra_plugins`` package: this registers the project's
Optuna sweeper (``pipeline/search/sweeper.py``) under ``hydra/sweeper=optuna``."""

from pipeline.search.sweeper import OptunaSweeper as _OptunaSweeper


class OptunaSweeper(_OptunaSweeper):
    __doc__ = _OptunaSweeper.__doc__

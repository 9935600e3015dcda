"""Registers the project's grid sweeper with planned seeds (``pipeline/search/replicates.py``)
under ``hydra/sweeper=replicates``."""

from pipeline.search.replicates import ReplicatesSweeper as _ReplicatesSweeper


class ReplicatesSweeper(_ReplicatesSweeper):
    __doc__ = _ReplicatesSweeper.__doc__

"""``python -m bench [--full]``: speed measured as ratios, side by side.

Every comparison alternates its contenders in one process after a warm-up and reports
medians (:mod:`bench.timing`); the table goes to stdout and the numbers to
``<output_dir>/bench/latest.json`` (the table alone in ``latest.md``) and a dated copy.
"""

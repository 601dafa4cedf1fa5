"""Experiment configs: one file per experiment, ``get_config(arg=None)``.

Run one as ``python -m experiments.run --config configs/NAME.py[:ARG]``; the
shared pieces live in :mod:`configs.common`, the paper setups in ``papers/``.
"""

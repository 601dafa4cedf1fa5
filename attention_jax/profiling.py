"""Profiler traces of chosen training steps (``train.profile_steps``).

``"A:B"`` traces steps A, A+1, …, B−1 (a Python slice) with
``jax.profiler.start_trace``/``stop_trace`` into the run's TensorBoard
directory, where the profile plugin (tensorboard-plugin-profile) opens it;
every step runs inside ``jax.profiler.StepTraceAnnotation("train",
step_num=step)`` so the trace viewer shows step boundaries. With several
processes each writes its own trace, under ``tb/process_<i>``. Tracing only
observes: the run's numbers are the same with and without it.
"""

from __future__ import annotations

import contextlib
import os

import jax
from absl import logging


def parse_window(text: str) -> tuple[int, int] | None:
  """``""`` -> None; ``"A:B"`` -> ``(A, B)`` with 1 <= A < B. ValueError otherwise."""
  text = text.strip()
  if not text:
    return None
  parts = text.split(":")
  if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
    raise ValueError(f"expected '' or 'A:B' (steps A to B-1, e.g. '20:25'), got {text!r}")
  a, b = (int(p) for p in parts)
  if not 1 <= a < b:
    raise ValueError(f"expected 1 <= A < B in 'A:B', got {text!r}")
  return a, b


def trace_dir(tb_dir: str) -> str:
  """Where this process writes its trace: ``tb_dir`` itself with one process,
  ``tb_dir/process_<i>`` with several (one trace each)."""
  if jax.process_count() == 1:
    return tb_dir
  return os.path.join(tb_dir, f"process_{jax.process_index()}")


class StepProfiler:
  """Starts a trace before the first step of the window and stops it after
  the last (or at :meth:`close`, when the run ends inside the window)."""

  def __init__(self, window: tuple[int, int] | None, tb_dir: str):
    self.window, self.tb_dir = window, tb_dir
    self.active = False

  @contextlib.contextmanager
  def step(self, step: int, state_after=lambda: None):
    """Runs one step inside its annotation; ``state_after()`` returns what to
    wait for before a trace stops (the step's outputs)."""
    w = self.window
    if w is not None and not self.active and w[0] <= step < w[1]:
      directory = trace_dir(self.tb_dir)
      logging.info("profiling steps %d..%d into %s", step, w[1] - 1, directory)
      jax.profiler.start_trace(directory)
      self.active = True
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      yield
    if self.active and step >= w[1] - 1:
      jax.block_until_ready(state_after())
      self.close()

  def close(self) -> None:
    if self.active:
      self.active = False
      jax.profiler.stop_trace()
      logging.info("profiler trace written to %s", trace_dir(self.tb_dir))

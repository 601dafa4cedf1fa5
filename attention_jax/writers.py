"""Metrics to ``metrics.jsonl`` and TensorBoard event files, and progress lines.

At the end of a run the flattened config is written as TensorBoard
hyperparameters (the HParams dashboard's session of this run; its metrics are
the run's last ``eval/*`` scalars), so a sweep's parent directory, given as one
``--logdir``, compares its points.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from tensorboardX import SummaryWriter  # writes event files without TensorFlow
from tensorboardX import summary as tb_summary

TB = "tb"


def tb_dir(workdir: str) -> str:
  """The run's TensorBoard directory (scalars, hparams, profiler traces)."""
  return os.path.join(workdir, TB)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  """``{"train": {"steps": 5}}`` -> ``{"train.steps": 5}`` (leaves only)."""
  out: dict[str, Any] = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _scalar(v: Any) -> float | int:
  v = v.item() if hasattr(v, "item") else v
  return v


class MetricWriter:
  """Writes one JSON object per line (with ``step`` and ``split``) and TB scalars.

  On resume from step ``resume_step``, lines with a later step (written after
  the last checkpoint by a run that was then killed) are dropped, and the
  TensorBoard writer purges the same events, so the files read as one run.
  """

  def __init__(self, workdir: str, resume_step: int | None = None):
    self.path = os.path.join(workdir, "metrics.jsonl")
    if resume_step is not None and os.path.exists(self.path):
      self._truncate_after(resume_step)
    self._file = open(self.path, "a", encoding="utf-8")
    purge = None if resume_step is None else resume_step + 1
    self._tb = SummaryWriter(tb_dir(workdir), purge_step=purge)

  def _truncate_after(self, step: int) -> None:
    with open(self.path, encoding="utf-8") as f:
      lines = f.readlines()
    kept = []
    for line in lines:
      try:
        if json.loads(line)["step"] <= step:
          kept.append(line)
      except (ValueError, KeyError):
        continue  # a line cut short by a kill
    tmp = self.path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.writelines(kept)
    os.replace(tmp, self.path)

  def write(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    row = {"step": int(step), "split": split}
    row.update({k: _scalar(v) for k, v in metrics.items()})
    self._file.write(json.dumps(row) + "\n")
    self._file.flush()
    for k, v in row.items():
      if k not in ("step", "split") and isinstance(v, (int, float)):
        self._tb.add_scalar(f"{split}/{k}", v, int(step))

  def hparams(self, config, final_eval: Mapping[str, Any]) -> None:
    """The flattened config as this run's hyperparameters (an HParams session
    that ended successfully); ``final_eval``'s numbers are the run's last
    ``eval/*`` scalars, which the dashboard shows beside them. Values that are
    not str/bool/int/float are written as their ``repr``."""
    flat = flatten(config.to_dict() if hasattr(config, "to_dict") else config)
    values = {
      k: (v if isinstance(v, (str, bool, int, float)) else repr(v)) for k, v in flat.items()
    }
    metrics = {
      f"eval/{k}": v
      for k, v in final_eval.items()
      if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    _, start, end = tb_summary.hparams(values, metrics)
    writer = self._tb.file_writer
    writer.add_summary(start)
    writer.add_summary(end)
    self._tb.flush()

  def flush(self) -> None:
    self._file.flush()
    self._tb.flush()

  def close(self) -> None:
    self._file.close()
    self._tb.close()


class NullWriter:
  """What processes other than the first write: nothing."""

  def write(self, step, split, metrics) -> None:
    del step, split, metrics

  def hparams(self, config, final_eval) -> None:
    del config, final_eval

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _hms(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  s = int(round(seconds))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
  """Measures steps/s and tokens/s between reports and estimates the ETA."""

  def __init__(self, total_steps: int, start_step: int):
    self.total = total_steps
    self._step = start_step
    self._time = time.perf_counter()
    self._tokens = 0

  def add_tokens(self, n: int) -> None:
    self._tokens += n

  def report(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    dt = max(now - self._time, 1e-9)
    steps_per_sec = (step - self._step) / dt
    tokens_per_sec = self._tokens / dt
    self._step, self._time, self._tokens = step, now, 0
    return {"steps_per_sec": steps_per_sec, "tokens_per_sec": tokens_per_sec}

  def line(self, step: int, loss: float, rates: Mapping[str, float]) -> str:
    sps = rates["steps_per_sec"]
    eta = (self.total - step) / sps if sps > 0 else float("inf")
    return (
      f"step {step}/{self.total}  loss {loss:.4f}  "
      f"{sps:.1f} steps/s  {rates['tokens_per_sec']:,.0f} tokens/s  "
      f"ETA {_hms(eta)}"
    )

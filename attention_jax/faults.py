"""Fault injection for the reliability tests: the ``ATTENTION_JAX_FAULT`` variable.

Unset (the normal case) injects nothing. Otherwise a comma-separated list of
``kind:step[:arg]`` (the kinds: the fields of :class:`Faults`), read once when a run
starts. Faults come from outside the step and the loop: :meth:`Faults.wrap_train_step`
wraps the jitted step, and :meth:`Faults.attach` sets the checkpointer's hooks.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

ENV = "ATTENTION_JAX_FAULT"
_STEP_KINDS = (
  "kill_at_step",
  "kill_in_save",
  "sigterm_at_step",
  "pause_at_step",
  "pause_before_save",
)
_AFTER_STEP_KINDS = ("kill_at_step", "sigterm_at_step", "pause_at_step")


@dataclasses.dataclass(frozen=True)
class Faults:
  """The faults of one run, parsed from ``ATTENTION_JAX_FAULT``."""

  # kill_at_step:N — SIGKILL this process right after train step N
  kill_at_step: int | None = None
  # kill_in_save:N — SIGKILL while step N's checkpoint is being committed (files written)
  kill_in_save: int | None = None
  # sigterm_at_step:N — send SIGTERM to this process after step N (a preemption notice)
  sigterm_at_step: int | None = None
  # pause_at_step:N — after step N, print a line and wait for a signal (a test then
  # preempts or kills the run there; SIGALRM ends the wait, and the run, after 5 min)
  pause_at_step: int | None = None
  # pause_before_save:N — before step N's checkpoint, the same (a test sends a second Ctrl-C)
  pause_before_save: int | None = None
  # nonfinite_at_step:A[-B] — a NaN loss, hence NaN gradients, at steps A..B (a second
  # jitted step, run at those steps); may repeat
  nonfinite_steps: tuple[tuple[int, int], ...] | None = None
  # fsize_limit_at_save:N:B — RLIMIT_FSIZE of B bytes just before step N's checkpoint
  # (a full disk)
  fsize_limit_at_save: tuple[int, int] | None = None

  def wrap_train_step(self, make_step: Callable[[Any], Callable], objective) -> Callable:
    """The train step ``make_step(objective)``, with this run's step faults.

    ``make_step(objective)`` returns a jitted ``(state, batch) -> (state,
    measurements)``. Without step faults that step is returned as it is.
    Otherwise the wrapper runs, at the steps of ``nonfinite_at_step``, the same
    step built with a NaN loss (:class:`NonFiniteLoss`), and after every step
    the kill/SIGTERM/pause faults.
    """
    step_fn = make_step(objective)
    if not self.nonfinite_steps and all(getattr(self, k) is None for k in _AFTER_STEP_KINDS):
      return step_fn
    nan_step_fn = make_step(NonFiniteLoss(objective)) if self.nonfinite_steps else None

    def wrapped(state, batch):
      n = int(state.step.addressable_data(0)) + 1  # the step this call does
      bad = any(lo <= n <= hi for lo, hi in self.nonfinite_steps or ())
      out = (nan_step_fn if bad else step_fn)(state, batch)
      self.after_step(n)
      return out

    return wrapped

  def attach(self, ckpt) -> None:
    """Sets the checkpointer's hooks (:class:`attention_jax.checkpoint.Checkpointer`)."""
    ckpt.before_save = self.before_save
    ckpt.before_commit = self.before_commit

  def after_step(self, step: int) -> None:
    if step == self.kill_at_step:
      os.kill(os.getpid(), signal.SIGKILL)
    if step == self.sigterm_at_step:
      os.kill(os.getpid(), signal.SIGTERM)
    if step == self.pause_at_step:
      _pause(f"after step {step}")

  def before_save(self, step: int) -> None:
    if step == self.pause_before_save:
      _pause(f"before saving step {step}")
    if self.fsize_limit_at_save and step == self.fsize_limit_at_save[0]:
      limit = self.fsize_limit_at_save[1]
      _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
      resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

  def before_commit(self, step: int) -> None:
    if step == self.kill_in_save:
      os.kill(os.getpid(), signal.SIGKILL)


_PAUSE_ENDS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def _pause(where: str) -> None:
  """Waits for one of ``_PAUSE_ENDS``, then hands it to the handler it would
  have reached. Polls (a signal that lands between the printed line and a
  ``signal.pause()`` would be missed)."""
  got = []
  old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in _PAUSE_ENDS}
  try:
    print(f"fault: paused {where} until a signal arrives", file=sys.stderr, flush=True)
    signal.alarm(300)  # never hang a test: SIGALRM ends the run
    while not got:
      time.sleep(0.02)
    signal.alarm(0)
  finally:
    for s, handler in old.items():
      signal.signal(s, handler)
  for s in got:
    handler = old[s]
    if callable(handler):
      handler(s, None)
    elif handler == signal.SIG_DFL:
      os.kill(os.getpid(), s)


class NonFiniteLoss:
  """``objective`` with a NaN training loss, hence NaN gradients."""

  def __init__(self, objective):
    self.objective = objective

  def train_loss(self, model, batch, rng, config):
    loss, extra = self.objective.train_loss(model, batch, rng, config)
    return loss * float("nan"), extra

  def __getattr__(self, name):
    return getattr(self.objective, name)


def parse(text: str) -> Faults:
  """Parses the variable's value; raises ValueError naming a bad item."""
  kw = {}
  for item in filter(None, (s.strip() for s in text.split(","))):
    kind, _, rest = item.partition(":")
    try:
      if kind in _STEP_KINDS:
        kw[kind] = int(rest)
      elif kind == "nonfinite_at_step":
        lo, _, hi = rest.partition("-")
        kw["nonfinite_steps"] = kw.get("nonfinite_steps", ()) + ((int(lo), int(hi or lo)),)
      elif kind == "fsize_limit_at_save":
        step, limit = rest.split(":")
        kw["fsize_limit_at_save"] = (int(step), int(limit))
      else:
        raise ValueError
    except ValueError:
      raise ValueError(
        f"{ENV}: cannot parse {item!r}; known: "
        + ", ".join(_STEP_KINDS + ("nonfinite_at_step:A[-B]", "fsize_limit_at_save:N:BYTES"))
      ) from None
  return Faults(**kw)


def from_env() -> Faults:
  return parse(os.environ.get(ENV, ""))

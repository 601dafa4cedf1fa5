"""Every error a user can meet, in one leaf module (it imports only the standard library).

Each message is one line naming the file, line, key or value at fault; the
entry points print it as ``error: …`` and exit with the code below
(``experiments/cli.py``). Modules raise these types and never reach "up" for
an error class, so no import cycle can form around them.
"""

import errno


class ConfigError(ValueError):
  """A config key or value is wrong, or a config cannot be used here."""


class DataError(ConfigError):
  """The data a config names is bad (the message names the file and line)."""


class ResumeRefused(ConfigError):
  """The config cannot resume the workdir's run (shapes or hyperparameters)."""


class WorkdirError(RuntimeError):
  """A workdir cannot be loaded: no config.json, no checkpoint, or a
  checkpoint that does not fit the model its config describes."""


class EvalError(RuntimeError):
  """A workdir or input cannot be evaluated, translated or compared."""


class SweepError(ValueError):
  """A sweep definition or sweep directory is wrong."""


class NonFiniteError(RuntimeError):
  """The loss or gradient norm became NaN or Inf."""


class Preempted(RuntimeError):
  """SIGTERM arrived: the step in progress was finished and saved."""


class Interrupted(Preempted):
  """Ctrl-C (SIGINT) arrived: the step in progress was finished and saved."""


class DataChanged(ConfigError):
  """A resumed run's data files differ from those it was trained on."""


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir."""


class CheckpointError(RuntimeError):
  """A checkpoint cannot be written or read."""


class CheckpointWriteError(CheckpointError):
  """Saving a step failed (e.g. the disk is full); older steps are intact."""


class CorruptCheckpointError(CheckpointError):
  """A step's files do not match the hashes recorded when it was saved."""

  def __init__(self, step: int, message: str):
    super().__init__(message)
    self.step = step


def one_line(e: BaseException, limit: int = 300, with_type: bool = False) -> str:
  """``e``'s message on one line, at most ``limit`` characters, optionally
  after its type name: for quoting a library's error inside one of ours. A
  longer message keeps its start and its end (``…`` between): the reason
  (``File too large``) usually ends it, after paths of any length."""
  text = " ".join(str(e).split())
  if len(text) > limit:
    tail = limit // 3
    text = f"{text[: limit - tail]} … {text[-tail:]}"
  return f"{type(e).__name__}: {text}" if with_type else text


# Exit codes of the entry points, by error type (most specific first).
EXIT_BAD_INPUT = 2  # config, flags, data, a workdir that cannot be loaded or resumed
EXIT_NONFINITE = 3  # NaN/Inf loss or gradients
EXIT_CHECKPOINT = 4  # a checkpoint cannot be written, or is corrupt (on_corrupt=stop)
EXIT_LOCKED = 5  # another process holds the workdir
EXIT_OS = 6  # a file or directory cannot be written or read (permission, read-only, full)
EXIT_PREEMPTED = 75  # SIGTERM: the step was finished and saved; run again (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT): as SIGTERM in training; elsewhere nothing written

EXIT_CODES = (
  (NonFiniteError, EXIT_NONFINITE),
  (CheckpointError, EXIT_CHECKPOINT),
  (WorkdirLockedError, EXIT_LOCKED),
  (Interrupted, EXIT_INTERRUPTED),
  (Preempted, EXIT_PREEMPTED),
  (ConfigError, EXIT_BAD_INPUT),
  (WorkdirError, EXIT_BAD_INPUT),
  (EvalError, EXIT_BAD_INPUT),
  (SweepError, EXIT_BAD_INPUT),
  (FileNotFoundError, EXIT_BAD_INPUT),
  (OSError, EXIT_OS),
)


def os_error_line(e: OSError) -> str:
  """An OSError as one line naming the path and the errno's meaning:
  ``cannot write /w/run.lock: Read-only file system (EROFS)``."""
  path = e.filename if e.filename is not None else "?"
  if e.filename2 is not None:
    path = f"{path} -> {e.filename2}"
  name = errno.errorcode.get(e.errno, "") if e.errno else ""
  reason = e.strerror or one_line(e)
  return f"{path}: {reason}" + (f" ({name})" if name else "")

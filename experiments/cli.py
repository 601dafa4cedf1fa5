"""Shared pieces of the entry points: flag parsing and one-line errors.

The entry points import ``attention_jax`` inside ``main`` (and this module
inside its functions) on purpose: ``--help`` and flag errors answer without
importing jax.
"""

from __future__ import annotations

import contextlib
import logging
import sys

from absl import flags
from absl import logging as absl_logging


def fail(message: str, code: int = 2):
  """Prints ``error: message`` as one line on stderr and exits."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


class _QuietLibraries(logging.Filter):
  """Drops the INFO chatter of orbax and jax internals; keeps their warnings."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or not any(
      p in record.pathname for p in ("orbax", "jax/_src", "jax\\_src")
    )


def _config_override_error(argv) -> str | None:
  """Names an unknown ``--config.KEY=...`` override, with a suggestion."""
  from attention_jax import config as config_lib

  for arg in argv[1:]:
    if arg.startswith("--config."):
      key = arg[len("--config.") :].split("=", 1)[0]
      msg = config_lib.unknown_key_message(key)
      if msg:
        return f"{arg.split('=', 1)[0]}: {msg}"
  return None


def parse_flags(argv):
  """absl flag parsing whose errors are one line (no usage dump)."""
  absl_logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(_config_override_error(argv) or _config_file_error(e) or " ".join(str(e).split()))
  except Exception as e:  # raised while a config file ran, or by an override
    where = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if where is None and "--config" in argv[:-1]:
      where = argv[argv.index("--config") + 1]
    msg = _config_override_error(argv) or f"{type(e).__name__}: {' '.join(str(e).split())}"
    fail(f"{where}: {msg}" if where else msg)


def _config_file_error(e: BaseException) -> str | None:
  """The message of an exception a config file raised (ml_collections wraps it
  in a traceback): the innermost one in the chain."""
  inner, seen = None, e.__context__
  while seen is not None and seen is not inner:
    inner, seen = seen, seen.__cause__ or seen.__context__
  if inner is None or "Error whilst parsing config file" in str(inner):
    return None
  return " ".join(str(inner).split())


def explicit_overrides(argv, name: str = "config") -> list[str]:
  """Dotted keys given as ``--config.KEY=V`` (or ``--config.KEY V``) in argv."""
  prefix = f"--{name}."
  return [a[len(prefix) :].split("=", 1)[0] for a in argv if a.startswith(prefix)]


def load_config(holder):
  """The config of a ``config_flags`` flag, its per-model values resolved
  (command-line overrides win) and validated; errors name the file."""
  from attention_jax import config as config_lib

  flag = flags.FLAGS[holder.name]
  name = getattr(flag, "config_filename", None) or str(flag.serialize())
  try:
    config = holder.value
    config.to_dict()  # a file that failed to load raises here
  except Exception as e:  # missing file, syntax error, exception in get_config
    cause = e.__cause__ or e
    detail = " ".join(str(cause).split())
    if isinstance(cause, FileNotFoundError) or "No such file" in detail:
      fail(f"config file '{name}' not found")
    fail(f"{name}: cannot load config: {type(cause).__name__}: {detail}")
  try:
    config = config_lib.resolve(config, explicit_overrides(sys.argv, holder.name))
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    fail(f"{name}: {e}")
  return config


def define_decoding_flags(
  *, whose: str = "the run's", split: bool = True, length_penalty: bool = True
):
  """``--split``, ``--beam``, ``--length_penalty`` and ``--step``, shared by
  evaluate, compare and translate (``split``/``length_penalty`` False: left
  out). Returns their holders as attributes of one object."""
  import types

  # Listed under the calling entry point in its --help.
  name = sys._getframe(1).f_globals["__name__"]
  module = {"module_name": sys.argv[0] if name == "__main__" else name}
  out = types.SimpleNamespace(split=None, length_penalty=None)
  if split:
    out.split = flags.DEFINE_string("split", "test", "Split: eval | test.", **module)
  out.beam = flags.DEFINE_integer(
    "beam", None, f"Beam size (1 = greedy); default: {whose} eval.beam_size.", **module
  )
  if length_penalty:
    out.length_penalty = flags.DEFINE_float(
      "length_penalty",
      None,
      f"Length penalty alpha; default: {whose} eval.length_penalty.",
      **module,
    )
  out.step = flags.DEFINE_string(
    "step",
    None,
    f"Checkpoint step: a number, or 'best' ({whose} best by checkpoint.best_metric); "
    "default: latest.",
    **module,
  )
  return out


def parse_step(value: str | None, flag: str = "--step"):
  """``--step``: None (latest), ``best`` (by ``checkpoint.best_metric``) or a step number."""
  if value is None or value == "best":
    return value
  if value.isdigit():
    return int(value)
  fail(f"{flag} {value!r}: expected a step number or 'best'")


@contextlib.contextmanager
def errors_as_one_line():
  """Known, user-facing errors (``attention_jax.errors``) become one line on
  stderr and the exit code of their type (``errors.EXIT_CODES``)."""
  from attention_jax import errors

  try:
    yield
  except tuple(t for t, _ in errors.EXIT_CODES) as e:
    code = next(c for t, c in errors.EXIT_CODES if isinstance(e, t))
    fail(" ".join(str(e).split()), code=code)

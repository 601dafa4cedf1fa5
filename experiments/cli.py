"""Shared pieces of the entry points: flag parsing and one-line errors.

The entry points import ``attention_jax`` inside ``main`` (and this module
inside its functions) on purpose: ``--help`` and flag errors answer without
importing jax.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import signal
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


def _config_value_error(e: BaseException) -> str | None:
  """A ``--config.KEY=VALUE`` whose value does not parse as the key's type,
  naming the key, the value and the type."""
  m = re.match(r"flag --config\.([\w.]+)=(.*?): ", str(e), re.S)
  if not m:
    return None
  key, value = m.groups()
  try:  # the loaded config file's value, else the schema's
    default = flags.FLAGS["config"].value
    for part in key.split("."):
      default = default[part]
  except (KeyError, AttributeError, TypeError):
    from attention_jax import config as config_lib

    default = config_lib.base_config()
    try:
      for part in key.split("."):
        default = default[part]
    except (KeyError, AttributeError, TypeError):
      return None
  return (
    f"--config.{key}={value}: config key '{key}' must be of type "
    f"{type(default).__name__}, got {value!r}"
  )


def parse_flags(argv):
  """absl flag parsing whose errors are one line (no usage dump)."""
  absl_logging.get_absl_handler().addFilter(_QuietLibraries())
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(
      _config_value_error(e)
      or _config_override_error(argv)
      or _config_file_error(e)
      or " ".join(str(e).split())
    )
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
  """The config of a ``config_flags`` flag, its per-model values applied
  (command-line overrides win) and validated; errors name the file."""
  from attention_jax import validation
  from attention_jax.errors import ConfigError

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
    config = validation.prepare(config, explicit_overrides(sys.argv, holder.name))
  except ConfigError as e:
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
  stderr and the exit code of their type (``errors.EXIT_CODES``); an OSError
  names its path and the errno's meaning."""
  from attention_jax import errors

  try:
    yield
  except tuple(t for t, _ in errors.EXIT_CODES) as e:
    code = next(c for t, c in errors.EXIT_CODES if isinstance(e, t))
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
      fail(errors.os_error_line(e), code=code)
    fail(" ".join(str(e).split()), code=code)


INTERRUPTED = "interrupted by Ctrl-C (SIGINT)"


def _exit_on_interrupt(signum, frame) -> None:
  """Ctrl-C: one line, exit 130, at once (a KeyboardInterrupt raised inside a
  library's callback would be printed and dropped). Files are written inside
  ``writers.uninterrupted`` blocks, which hold Ctrl-C until they end."""
  del signum, frame
  sys.stdout.flush()
  print(f"error: {INTERRUPTED}", file=sys.stderr, flush=True)
  os._exit(130)


def run(main, *, exit_on_interrupt: bool = True, malloc: str = "hugepages") -> None:
  """``absl.app.run(main)`` with :func:`parse_flags`. Ctrl-C is one line and
  exit 130: at once (``exit_on_interrupt``), or as a KeyboardInterrupt for an
  entry point that stops its own work first (the sweep). Training replaces
  the handler while it runs: Ctrl-C there saves the step in progress. Host
  memory: :func:`attention_jax.host_memory.configure` (``ATTENTION_JAX_MALLOC``,
  ``malloc`` when it is not set), before any computation; ``hugepages``
  restarts the process once, first, with glibc's tunable set."""
  from absl import app

  from attention_jax import host_memory  # before JAX's first computation

  try:
    restart_env = host_memory.configure(default=malloc)
  except ValueError as e:
    fail(str(e))
  if restart_env is not None:
    host_memory.restart(restart_env)  # returns only if it failed (host_memory.state says so)
  if exit_on_interrupt and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _exit_on_interrupt)
  try:
    app.run(functools.partial(_with_jax_options, main), flags_parser=parse_flags)
  except KeyboardInterrupt:
    fail(INTERRUPTED, code=130)


def _with_jax_options(main, argv):
  """``main(argv)`` after the JAX settings the host-memory choice needs (``inline``:
  asynchronous dispatch off), before JAX's CPU client starts; after the flags are
  parsed, so ``--help`` and flag errors answer without importing jax."""
  from attention_jax import host_memory

  if options := host_memory.jax_options():
    import jax

    for name, value in options.items():
      jax.config.update(name, value)
    host_memory.jax_options_set()
  return main(argv)

"""Dataclass fields that are config keys: what a model (``model.*``) or a data
task (``data.*``) reads, and in which settings.

A field is the key of the same name in its section, except *context* fields
(:func:`context`), which the boundary that builds the dataclass fills in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_CONTEXT = "context"
_READ_WHEN = "read_when"


def context() -> Any:
  """A field filled by the caller, not a config key (no default)."""
  return dataclasses.field(metadata={_CONTEXT: True})


def read_when(predicate: Callable[[Any], bool], default: Any) -> Any:
  """A config key read only where ``predicate(instance)`` holds."""
  return dataclasses.field(default=default, metadata={_READ_WHEN: predicate})


def config_keys_of(cls) -> tuple[str, ...]:
  """The config keys that are fields of ``cls`` (read in some setting)."""
  return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get(_CONTEXT))


def context_keys_of(cls) -> tuple[str, ...]:
  """The context fields of ``cls``."""
  return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(_CONTEXT))


def from_section(cls, section, context: Callable[[str], Any]):
  """``cls`` with each key field from the config ``section`` and each context
  field from ``context(name)``."""
  values = {key: section[key] for key in config_keys_of(cls)}
  values.update({key: context(key) for key in context_keys_of(cls)})
  return cls(**values)


def keys_read(instance) -> tuple[str, ...]:
  """The config keys that ``instance`` (such a dataclass) reads."""
  return tuple(
    f.name
    for f in dataclasses.fields(instance)
    if not f.metadata.get(_CONTEXT) and f.metadata.get(_READ_WHEN, lambda _: True)(instance)
  )

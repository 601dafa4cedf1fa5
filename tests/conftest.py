"""Shared test helpers: the repository root and the tiny config."""

import os

import pytest

from attention_jax.testing import tiny_config  # noqa: F401  (tests import it from here)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def make_config():
  return tiny_config

"""configs/papers/: every paper config validates at full size (TFDS dataset by
name, no data needed) and trains its tiny mode end to end."""

import importlib.util
import os

import pytest
from conftest import ROOT

from attention_jax import train, validation, writers

PAPERS = {  # file -> (model.name, TFDS dataset, source, target)
  "cho2014": ("rnn_encdec", "tfds:wmt14_translate/fr-en", "en", "fr"),
  "sutskever2014": ("seq2seq_lstm", "tfds:wmt14_translate/fr-en", "en", "fr"),
  "bahdanau2014": ("rnnsearch", "tfds:wmt14_translate/fr-en", "en", "fr"),
  "luong2015": ("luong", "tfds:wmt14_translate/de-en", "en", "de"),
  "vaswani2017": ("transformer", "tfds:wmt14_translate/de-en", "en", "de"),
}


def _module(name):
  path = os.path.join(ROOT, "configs", "papers", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"paper_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_full_config_validates(name):
  c = _module(name).get_config()
  validation.validate(c)
  model, task, src, tgt = PAPERS[name]
  assert (c.model.name, c.data.task, c.data.source_lang, c.data.target_lang) == (
    model,
    task,
    src,
    tgt,
  )


def test_bahdanau_variants():
  m = _module("bahdanau2014")
  got = {v: (m.get_config(v).model.name, m.get_config(v).data.max_length) for v in m.VARIANTS}
  assert got == {
    "rnnsearch30": ("rnnsearch", 30),
    "rnnsearch50": ("rnnsearch", 50),
    "rnnencdec30": ("rnn_encdec", 30),
    "rnnencdec50": ("rnn_encdec", 50),
  }
  c = m.get_config("rnnsearch30")
  assert (
    c.model.hidden_size,
    c.model.embed_dim,
    c.model.readout_dim,
    c.train.batch_size,
    c.train.optimizer,
  ) == (1000, 620, 500, 80, "adadelta")
  with pytest.raises(ValueError, match="unknown argument 'rnnsearch40'"):
    m.get_config("rnnsearch40")
  with pytest.raises(
    ValueError,
    match="^configs/papers/bahdanau2014.py: arguments 'rnnsearch30', 'rnnencdec50' do not combine",
  ):
    m.get_config("rnnsearch30,rnnencdec50")
  assert m.get_config("tiny,rnnencdec30").to_dict() == m.get_config("rnnencdec30,tiny").to_dict()


def test_vaswani_learning_rate_is_eq3_peak():
  c = _module("vaswani2017").get_config()
  assert c.train.learning_rate == pytest.approx(6.988e-4, rel=1e-3)


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_tiny_mode_trains(tmp_path, name):
  arg = "rnnencdec30,tiny" if name == "bahdanau2014" else "tiny"
  c = _module(name).get_config(arg)
  final = train.train_and_evaluate(c, str(tmp_path))
  assert c.model.name == (PAPERS[name][0] if name != "bahdanau2014" else "rnn_encdec")
  rows = [r for r in writers.read_metrics(str(tmp_path)) if r["split"] == "train"]
  assert rows[-1]["step"] == c.train.steps
  assert 0.0 <= final["sequence_accuracy"] <= 1.0 and final["loss"] > 0

"""notebooks/tour.ipynb: in sync with its jupytext pair, outputs stripped, and
it runs top to bottom (nbclient, kernel ``python3`` from ipykernel)."""

import os
import time

from conftest import ROOT

NOTEBOOK = os.path.join(ROOT, "notebooks", "tour.ipynb")
PAIRED = os.path.join(ROOT, "notebooks", "tour.py")


def _cells(nb):
  return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_notebook_matches_its_pair_and_has_no_outputs():
  import jupytext
  import nbformat

  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert _cells(nb) == _cells(jupytext.read(PAIRED)), (
    "notebooks/tour.ipynb and tour.py differ: run `jupytext --sync notebooks/tour.py`"
  )
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, "strip the outputs"
  assert nb.metadata.kernelspec.name == "python3"


def test_notebook_has_only_public_names():
  """The tour uses the package's public API: no ``module._name``."""
  import re

  with open(PAIRED, encoding="utf-8") as f:
    text = f.read()
  assert not re.findall(r"\b(?:attention_jax|[a-z_]+)\._[a-z]\w*", text)


def test_notebook_runs_top_to_bottom():
  import nbclient
  import nbformat

  nb = nbformat.read(NOTEBOOK, as_version=4)
  t0 = time.perf_counter()
  nbclient.NotebookClient(
    nb,
    timeout=600,
    kernel_name="python3",
    resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}},
  ).execute()
  seconds = time.perf_counter() - t0
  text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
  assert "max |context difference|" in text
  assert "RNNsearch: exact match" in text
  assert "restored rnnsearch" in text
  assert "held-out perplexity per character" in text
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 7  # 5 attention heatmaps, exact match by length, an alignment
  print(f"notebook ran in {seconds:.0f} s")

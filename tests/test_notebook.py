"""examples/onnxfault.ipynb runs headlessly (nbclient, the python3 kernel of this environment) from the
repository root, and shows what it promises: the evaluation, the top-k table, the synthesis and the comparison
as the results' own HTML, and the report page."""
from __future__ import annotations

import re

import pytest

from conftest import EXAMPLES, ROOT

from onnxfault import localize

NOTEBOOK = EXAMPLES / "onnxfault.ipynb"


@pytest.fixture(scope="module")
def executed():
    """The notebook after a run (skips only when nbclient, nbformat or ipykernel is missing)."""
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat: pip install -e '.[dev]'")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient: pip install -e '.[dev]'")
    pytest.importorskip("ipykernel", reason="needs ipykernel (the python3 kernel): pip install -e '.[dev]'")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in notebook.cells
               if c.cell_type == "code"), "the shipped notebook keeps no outputs"
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    return notebook


def html_of(notebook, source_end: str) -> str:
    """The text/html output of the code cell whose source ends with ``source_end``."""
    cell = next(c for c in notebook.cells if c.cell_type == "code" and c.source.rstrip().endswith(source_end))
    return "".join(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))


def test_the_notebook_runs_without_error(executed):
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o["output_type"] == "error"]
    assert not errors, errors
    assert all(c.execution_count for c in executed.cells if c.cell_type == "code")


def test_the_notebook_shows_the_results(executed):
    loading = next(c for c in executed.cells if c.cell_type == "code")
    assert "(2000, 28, 28) uint8 → model input (1, 28, 28)" in loading.outputs[0]["text"]
    assert "accuracy" in html_of(executed, "accuracy").lower()

    table = re.search(r"<caption>Top 10 neurons by ochiai[^<]*</caption>.*?</table>", html_of(executed, "ranking"),
                      re.S)
    assert table, "the top-10 table of the localize result"
    shown = [float(v) for v in re.findall(r'data-key="score" data-value="([^"]+)"', table.group())]
    expected = localize(EXAMPLES / "mnist_lenet.onnx", EXAMPLES / "mnist_sample.npz", measure="ochiai", k=10)
    assert shown == [n.score for n in expected.neurons]  # the file route's ranking, to the bit

    plot = next(c for c in executed.cells if c.cell_type == "code" and c.source.startswith("ranking.plot()"))
    assert any("image/png" in o.get("data", {}) for o in plot.outputs)

    assert "fgsm" in html_of(executed, "tests")
    comparison = html_of(executed, "comparison")
    assert "Spectra per paired layer" in comparison and "Rankings (top-10)" in comparison
    assert "predictions agree 100.00 %" in comparison
    assert "<html" not in html_of(executed, "page") and "Suspiciousness" in html_of(executed, "page")

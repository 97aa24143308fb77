"""Generated JSON (and bytes posing as JSON) fed to every reader of JSON files: a `--neurons` file, a run given
to `report`, a legacy Keras architecture. Whatever the input, the only failure allowed is one OnnxFaultError."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnxfault import load_model
from onnxfault.adapters.keras_legacy import load_legacy_keras
from onnxfault.errors import OnnxFaultError
from onnxfault.report.runs import read_run
from onnxfault.synthesis import read_neurons

from conftest import EXAMPLES

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
MODEL = load_model(EXAMPLES / "mnist_dense.onnx")
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["neurons", "tensor", "index", "rank", "score", "as", "af", "ns", "nf", "granularity",
                     "class_name", "config", "layers", "name", "method", "measure", "samples", "x", "batch_input_shape",
                     "units", "activation", "inbound_nodes", "kind", "report"]) | st.text(max_size=4),
    inner, max_size=6), max_leaves=30)


def readers(path):
    yield lambda: read_neurons(path, MODEL)
    yield lambda: read_run(path)
    yield lambda: load_legacy_keras(path)


def only_onnxfault_errors(path) -> None:
    for read in readers(path):
        try:
            read()
        except OnnxFaultError as err:
            assert "\n" not in str(err).strip(), str(err)


@FUZZ
@given(value=values)
def test_generated_json_values(tmp_path, value):
    path = tmp_path / "g.json"
    path.write_text(json.dumps(value))
    only_onnxfault_errors(path)


@FUZZ
@given(data=st.binary(max_size=512))
def test_generated_bytes_as_json(tmp_path, data):
    path = tmp_path / "g.json"
    path.write_bytes(data)
    only_onnxfault_errors(path)


@pytest.mark.parametrize("depth", [10, 100_000])
def test_deeply_nested_json(tmp_path, depth):
    path = tmp_path / "deep.json"
    path.write_text('{"neurons": ' + "[" * depth + "]" * depth + "}")
    only_onnxfault_errors(path)


def test_a_line_break_read_from_a_file_stays_on_the_error_line(tmp_path):
    """Found by the generated values above: a Keras model class named "\\n" made a two-line error."""
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"class_name": "a\nb"}))
    with pytest.raises(OnnxFaultError) as caught:
        load_legacy_keras(path)
    assert "\n" not in str(caught.value) and "class 'a\\nb'" in str(caught.value)

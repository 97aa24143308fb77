"""Issue 23, item 2: Keras ``.h5`` weights follow the rules of ONNX external data and data files. No link or
external storage reaches outside the model's folder, only regular files are read (a FIFO cannot hang a run),
a declared size is checked against the bytes stored before anything is allocated, and every weight's shape is
checked against its layer's config."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import onnxruntime as ort
import pytest

MEMORY_LIMIT = 1536 * 2**20  # RLIMIT_AS for the memory cases
KERNEL = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
BIAS = np.array([0.5, -0.5, 0.25], np.float32)


def architecture(units: int = 3) -> dict:
    dense = {"class_name": "Dense", "config": {"name": "dense_1", "units": units, "activation": "softmax",
                                               "use_bias": True, "batch_input_shape": [None, 4]}}
    return {"class_name": "Sequential", "keras_version": "2.2.4", "config": {"name": "s", "layers": [dense]}}


def write(folder: Path, kernel=lambda group, name: group.create_dataset(name, data=KERNEL), units: int = 3,
          names=("dense_1/kernel:0", "dense_1/bias:0")) -> Path:
    """model.json + model.h5 in ``folder``; ``kernel(group, name)`` stores the kernel (the hostile part)."""
    folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text(json.dumps(architecture(units)))
    with h5py.File(folder / "model.h5", "w") as fh:
        fh.attrs["layer_names"] = [b"dense_1"]
        group = fh.create_group("dense_1")
        group.attrs["weight_names"] = [n.encode() for n in names]
        kernel(group, "dense_1/kernel:0")
        group["dense_1/bias:0"] = BIAS
    return folder / "model.json"


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder``: its mode and size (a FIFO is never opened)."""
    return {str(p.relative_to(folder)): (os.lstat(p).st_mode, os.lstat(p).st_size) for p in sorted(folder.rglob("*"))}


def convert(source: Path, *extra, timeout: float = 60) -> subprocess.CompletedProcess:
    """``onnxfault convert`` in a child process capped at ``MEMORY_LIMIT`` (a FIFO that hangs fails the timeout)."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        sys.argv = ["onnxfault", *sys.argv[1:]]
        from onnxfault.cli import main
        main()
    """)
    args = ["convert", str(source), "-o", str(source.parent / "out.onnx"), *map(str, extra)]
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=source.parent)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def outputs_of(model: Path) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    x = np.eye(4, dtype=np.float32)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def expected() -> np.ndarray:
    logits = np.eye(4, dtype=np.float32) @ KERNEL + BIAS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file outside the model's folder whose bytes would make a valid kernel."""
    path = tmp_path / "secret.bin"
    KERNEL.tofile(path)
    return path


def external(name: str, offset: int = 0):
    return lambda group, key: group.create_dataset(key, shape=(4, 3), dtype="<f4", external=[(name, offset, 48)])


def linked(filename: str, path: str = "/kernel"):
    def store(group, key):
        group[key] = h5py.ExternalLink(filename, path)
    return store


# ---- what stays allowed: the same things inside the folder ------------------------------------------
def test_external_storage_and_links_inside_the_folder_are_read(tmp_path):
    source = write(tmp_path / "m", external("raw/kernel.bin"))
    (tmp_path / "m" / "raw").mkdir()
    KERNEL.tofile(tmp_path / "m" / "raw" / "kernel.bin")
    assert convert(source).returncode == 0
    np.testing.assert_allclose(outputs_of(tmp_path / "m" / "out.onnx"), expected(), rtol=1e-6)

    source = write(tmp_path / "n", linked("parts.h5"))
    with h5py.File(tmp_path / "n" / "parts.h5", "w") as fh:
        fh["kernel"] = KERNEL
    result = convert(source)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(outputs_of(tmp_path / "n" / "out.onnx"), expected(), rtol=1e-6)


def test_external_storage_is_resolved_against_the_model_folder_not_the_working_folder(tmp_path):
    source = write(tmp_path / "m", external("kernel.bin"))
    KERNEL.tofile(tmp_path / "m" / "kernel.bin")
    (tmp_path / "elsewhere").mkdir()
    (-KERNEL).tofile(tmp_path / "elsewhere" / "kernel.bin")  # what HDF5 itself would read from the cwd
    code = f"import sys; sys.argv = ['onnxfault', *sys.argv[1:]]\nfrom onnxfault.cli import main\nmain()"
    result = subprocess.run([sys.executable, "-c", code, "convert", str(source), "-o", str(tmp_path / "m" / "o.onnx")],
                            capture_output=True, text=True, cwd=tmp_path / "elsewhere", timeout=60)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(outputs_of(tmp_path / "m" / "o.onnx"), expected(), rtol=1e-6)


# ---- refused: outside the folder, not a regular file, sizes that lie, shapes that disagree -----------
def hostile_case(tmp_path: Path, case: str, secret: Path) -> tuple[Path, str]:
    folder = tmp_path / "m"
    if case == "external storage outside the folder (absolute)":
        return write(folder, external(str(secret))), "outside the model's folder"
    if case == "external storage outside the folder (../)":
        return write(folder, external("../secret.bin")), "names ../secret.bin, outside the model's folder"
    if case == "external storage through a symlink out":
        source = write(folder, external("inside.bin"))
        (folder / "inside.bin").symlink_to(secret)
        return source, "names inside.bin, outside the model's folder"
    if case == "external storage on a FIFO":
        source = write(folder, external("pipe"))
        os.mkfifo(folder / "pipe")
        return source, "not a regular file"
    if case == "external storage shorter than declared":
        source = write(folder, external("short.bin", offset=40))
        KERNEL.tofile(folder / "short.bin")
        return source, "declares 48 bytes at offset 40"
    if case == "external link outside the folder":
        with h5py.File(tmp_path / "other.h5", "w") as fh:
            fh["kernel"] = KERNEL
        return write(folder, linked("../other.h5")), "the external link '/dense_1/dense_1/kernel:0' in"
    if case == "external link to a FIFO":
        source = write(folder, linked("pipe.h5"))
        os.mkfifo(folder / "pipe.h5")
        return source, "not a regular file"
    if case == "soft link to an external link out":
        with h5py.File(tmp_path / "other.h5", "w") as fh:
            fh["kernel"] = KERNEL

        def store(group, key):
            group.file["escape"] = h5py.ExternalLink("../other.h5", "/kernel")
            group[key] = h5py.SoftLink("/escape")
        return write(folder, store), "names ../other.h5, outside the model's folder"
    if case == "soft links in a loop":
        def store(group, key):
            group.file["a"] = h5py.SoftLink("/b")
            group.file["b"] = h5py.SoftLink("/a")
            group[key] = h5py.SoftLink("/a")
        return write(folder, store), "links more than 16 times in a row"
    if case == "virtual dataset":
        with h5py.File(folder.parent / "src.h5", "w") as fh:
            fh["k"] = KERNEL

        def store(group, key):
            layout = h5py.VirtualLayout(shape=(4, 3), dtype="f4")
            layout[:] = h5py.VirtualSource("../src.h5", "k", shape=(4, 3))
            group.create_virtual_dataset(key, layout)
        return write(folder, store), "is a virtual dataset"
    if case == "8 KiB declaring 4 GB":
        return (write(folder, lambda g, k: g.create_dataset(k, shape=(4, 250_000_000), dtype="f4")),
                "declares 4,000,000,000 bytes of weights but stores 0")
    if case == "compressed chunks declaring 4 GB":
        return (write(folder, lambda g, k: g.create_dataset(k, shape=(4, 250_000_000), dtype="f4", chunks=(4, 1 << 16),
                                                            compression="gzip")),
                "declares 4,000,000,000 bytes of weights but stores 0")
    if case == "Dense of 10^12 units, (4, 3) kernel":
        return write(folder, units=10**12), "need (4, 1000000000000)"
    if case == "kernel transposed":
        return write(folder, lambda g, k: g.create_dataset(k, data=KERNEL.T)), "has shape (3, 4), but the layer's config"
    if case == "weight listed but missing":
        return write(folder, lambda g, k: None), "lists weight 'dense_1/kernel:0' of layer 'dense_1' but does not hold it"
    if case == "weights of strings":
        return write(folder, lambda g, k: g.create_dataset(k, data=np.array([b"ab"] * 12).reshape(4, 3))), "not numbers"
    if case == "weights file is a FIFO":
        folder.mkdir()
        (folder / "model.json").write_text(json.dumps(architecture()))
        os.mkfifo(folder / "model.h5")
        return folder / "model.json", "model.h5 is a FIFO (named pipe), not a regular file"
    raise AssertionError(case)


CASES = ["external storage outside the folder (absolute)", "external storage outside the folder (../)",
         "external storage through a symlink out", "external storage on a FIFO", "external storage shorter than declared",
         "external link outside the folder", "external link to a FIFO", "soft link to an external link out",
         "soft links in a loop", "virtual dataset", "8 KiB declaring 4 GB", "compressed chunks declaring 4 GB",
         "Dense of 10^12 units, (4, 3) kernel", "kernel transposed", "weight listed but missing", "weights of strings",
         "weights file is a FIFO"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_keras_weights_are_refused(tmp_path, secret, case):
    source, message = hostile_case(tmp_path, case, secret)
    if (source.parent / "model.h5").is_file():
        assert (source.parent / "model.h5").stat().st_size < 16 * 1024  # tiny files, whatever they declare
    before = listing(tmp_path)
    assert_refused(convert(source, timeout=30), message)
    assert listing(tmp_path) == before  # no output, no temp file; the FIFO and the secret untouched
    assert stat.S_ISREG(secret.stat().st_mode) and secret.read_bytes() == KERNEL.tobytes()


def test_a_legitimate_model_converts_under_the_same_memory_limit(tmp_path):
    source = write(tmp_path / "m")
    result = convert(source)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(outputs_of(tmp_path / "m" / "out.onnx"), expected(), rtol=1e-6)

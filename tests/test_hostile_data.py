"""Hostile data and model files: each is refused with one `error:` line and exit 1, no traceback, nothing
written, and declared sizes are checked before any array is read (memory cases run under an address-space
limit)."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from onnxfault.data import open_source
from onnxfault.data.source import MAX_SAMPLES
from onnxfault.errors import OnnxFaultError

from conftest import EXAMPLES, init

MODEL = EXAMPLES / "mnist_dense.onnx"
MEMORY_LIMIT = 1536 * 2**20  # RLIMIT_AS for the memory cases


# ---- building hostile files -------------------------------------------------------------------------
def npy(shape, dtype="<u1", data: bytes = b"", fortran: bool = False) -> bytes:
    """An .npy stream whose header declares ``shape`` whatever ``data`` holds."""
    fh = io.BytesIO()
    np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str if np.dtype(dtype).fields is None
                                              else np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                              "fortran_order": fortran, "shape": tuple(shape)})
    return fh.getvalue() + data


def npy_of(array: np.ndarray) -> bytes:
    fh = io.BytesIO()
    np.lib.format.write_array(fh, array, allow_pickle=True)
    return fh.getvalue()


def npz(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name + ".npy", data)
    return path


def idx(dims, data: bytes = b"", code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(width: int, height: int, rows: bytes | None = None) -> bytes:
    """A greyscale PNG declaring ``width`` × ``height`` pixels (its pixel data only as long as ``rows``)."""
    rows = rows if rows is not None else b"\x00" * (width + 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def image_folder(root: Path, first: tuple[str, bytes] | None = None) -> Path:
    """root/a/<first>, then a valid 2×2 image, root/b/ one valid image."""
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "z.png").write_bytes(png(2, 2, b"\x00\x01\x02" * 2))
    if first:
        (root / "a" / first[0]).write_bytes(first[1])
    return root


def files_under(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def one_error_line(result_code: int, stderr: str, output: str) -> str:
    assert result_code == 1, output
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in output and "MemoryError" not in output
    return lines[0]


@pytest.fixture
def refused(cli, tmp_path):
    """Run the CLI; assert exit 1, one `error:` line matching ``message``, no traceback, no file added."""
    import re

    def check(message: str, *args):
        before = files_under(tmp_path)
        result = cli(*args)
        line = one_error_line(result.exit_code, result.stderr, result.output)
        assert re.search(message, line), line
        assert files_under(tmp_path) == before
        return line

    return check


def evaluate(data, *extra):
    return ("evaluate", MODEL, "--data", data, *extra)


# ---- npz: every declared shape checked before any array is read -------------------------------------
NPZ = {
    "y declares 300M labels but holds 10": ({"x": npy((10, 28, 28), data=bytes(7840)), "y": npy((300_000_000,), "<i8", bytes(80))},
                                            r"array 'y' .* declares shape \(300000000,\) .* holds at most 80 bytes"),
    "x and y lengths differ": ({"x": npy((3, 28, 28), data=bytes(3 * 784)), "y": npy((5,), "<i8", bytes(40))},
                               "holds 3 samples in 'x' but 5 labels in 'y'"),
    "x declares huge samples": ({"x": npy((1, 2**20, 2**20), data=bytes(16)), "y": npy((1,), "<i8", bytes(8))},
                                r"declares shape \(1, 1048576, 1048576\) .* holds at most 16 bytes"),
    "x declares more rows than it holds": ({"x": npy((1000, 28, 28), data=bytes(784)), "y": npy((1000,), "<u1", bytes(1000))},
                                           r"array 'x' .* declares shape \(1000, 28, 28\)"),
    "x holds objects": ({"x": npy_of(np.array([[{"a": 1}]], dtype=object)), "y": npy((1,), "<i8", bytes(8))},
                        "array 'x' .* has type object .* never runs"),
    "y holds objects": ({"x": npy((1, 4), data=bytes(4)), "y": npy_of(np.array([{"a": 1}], dtype=object))},
                        "array 'y' .* has type object"),
    "x is complex": ({"x": npy((1, 4), "<c8", bytes(32)), "y": npy((1,), "<i8", bytes(8))}, "array 'x' .* has type complex64"),
    "x is structured": ({"x": npy((1, 4), [("a", "<i4")], bytes(16)), "y": npy((1,), "<i8", bytes(8))}, "array 'x' .* has type"),
    "y is two-dimensional": ({"x": npy((2, 4), data=bytes(8)), "y": npy((2, 1), "<i8", bytes(16))},
                             r"array 'y' .* shape \(2, 1\); expected one integer class index per sample"),
    "y is float with fractions": ({"x": npy((2, 4), data=bytes(8)), "y": npy_of(np.array([0.5, 1.0]))}, "not whole numbers"),
    "samples hold no numbers": ({"x": npy((5, 0), data=b""), "y": npy((5,), "<i8", bytes(40))}, "samples hold no numbers"),
    "x is not .npy": ({"x": b"not an npy file at all", "y": npy((1,), "<i8", bytes(8))}, "cannot read array 'x'"),
    "npy format 3.0": ({"x": b"\x93NUMPY\x03\x00" + bytes(20), "y": npy((1,), "<i8", bytes(8))}, r"\.npy format 3\.0 is not supported"),
    "negative dimension": ({"x": npy((2, 4), data=bytes(8)).replace(b"(2, 4)", b"(2,-4)"), "y": npy((2,), "<i8", bytes(16))},
                           "cannot read array 'x'|invalid shape"),
    "no y": ({"x": npy((2, 4), data=bytes(8))}, "needs 'x' \\(samples\\) and 'y'"),
}


@pytest.mark.parametrize("case", sorted(NPZ))
def test_hostile_npz(refused, tmp_path, case):
    members, message = NPZ[case]
    data = npz(tmp_path / "data.npz", members)
    refused(message, *evaluate(data, "--json", tmp_path / "out.json"))


def test_npz_compression_method_other_than_numpys(refused, tmp_path):
    data = npz(tmp_path / "data.npz", {"x": npy((2, 4), data=bytes(8)), "y": npy((2,), "<i8", bytes(16))},
               zipfile.ZIP_BZIP2)
    refused("uses zip compression method 12; save with numpy.savez", *evaluate(data))


def test_npz_truncated_archive(refused, tmp_path, sample_npz):
    data = tmp_path / "cut.npz"
    data.write_bytes(sample_npz.read_bytes()[:-300])
    refused("cannot read .*corrupt or not an .npz", *evaluate(data))


def npz_with_corrupt_x(path: Path, x: np.ndarray, method: int) -> Path:
    """An .npz of ``x`` (and zero labels) with 16 bytes inside x's member overwritten, every header intact:
    its data bytes 100 … 115 when stored, bytes of its deflated stream when compressed."""
    data = npz(path, {"x": npy_of(x), "y": npy_of(np.zeros(len(x), np.int64))}, method)
    raw = bytearray(data.read_bytes())
    header = len(npy_of(x)) - x.nbytes
    at = raw.find(npy_of(x)[header + 100:header + 116]) if method == zipfile.ZIP_STORED else len(raw) // 3
    raw[at:at + 16] = b"\xff" * 16
    data.write_bytes(bytes(raw))
    return data


def test_npz_corrupt_compressed_sample_data_found_while_streaming(refused, tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (10, 28, 28), np.uint8)  # x's deflated stream fills the file
    refused("cannot read .*(CRC|corrupt)", *evaluate(npz_with_corrupt_x(tmp_path / "data.npz", x, zipfile.ZIP_DEFLATED)))


def test_npz_stored_sample_data_is_read_as_it_is(tmp_path):
    """A stored member is memory-mapped and not CRC-checked (as numpy.load(mmap_mode="r")): overwritten data
    bytes come out as they are in the file; its headers and size are still checked (test_hostile_npz and the
    truncated cases)."""
    x = np.arange(10 * 784, dtype=np.uint8).reshape(10, 28, 28)
    data = npz_with_corrupt_x(tmp_path / "data.npz", x, zipfile.ZIP_STORED)
    want = x.copy().reshape(-1)
    want[100:116] = 0xFF
    assert np.concatenate(list(open_source(data).chunks(4, 0))).tobytes() == want.tobytes() != x.tobytes()


def test_npz_stored_member_cut_short_is_refused(refused, tmp_path):
    """A stored member whose zip entry declares fewer bytes than its .npy header needs is refused before any
    sample is read."""
    x = np.arange(10 * 784, dtype=np.uint8).reshape(10, 28, 28)
    data = npz(tmp_path / "data.npz", {"x": npy_of(x)[:-784], "y": npy_of(np.zeros(10, np.int64))}, zipfile.ZIP_STORED)
    refused(r"array 'x' .* declares shape \(10, 28, 28\) .* holds at most", *evaluate(data))


# ---- IDX: headers checked against file size, limits and each other before any data is read -----------
def test_labels_file_given_as_data_names_the_images_file(refused, tmp_path):
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    images.write_bytes(gzip.compress(idx((3, 28, 28), bytes(3 * 784))))
    labels.write_bytes(gzip.compress(idx((3,), bytes(3))))
    refused(f"{labels} is an IDX labels file .*not images; pass --data {images}", *evaluate(labels))


def test_labels_file_given_as_data_without_images_beside_it(refused, tmp_path):
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(idx((3,), bytes(3)))
    refused("is an IDX labels file .*pass the images file .* as --data", *evaluate(labels))


IDX = {
    "raw header declares a billion images": ({"imgs-idx3-ubyte": idx((10**9, 28, 28), bytes(784))},
                                             r"declares shape \(1000000000, 28, 28\) .* but holds at most 784 bytes"),
    "more samples than the limit": ({"imgs-idx3-ubyte": (idx((MAX_SAMPLES + 1, 1, 1)), MAX_SAMPLES + 1)},
                                    f"declares {MAX_SAMPLES + 1:,} samples, over onnxfault's limit"),
    "raw file shorter than declared": ({"imgs-idx3-ubyte": idx((100, 28, 28), bytes(784)), "labs-idx1-ubyte": idx((100,), bytes(100))},
                                       r"declares shape \(100, 28, 28\) \(78,400 bytes\) but holds at most 784"),
    "gz labels declare more than gzip can hold": ({"imgs-idx3-ubyte": idx((10_000_000, 1, 1), bytes(10_000_000)),
                                                  "labs-idx1-ubyte.gz": gzip.compress(idx((10_000_000,), bytes(1000)))},
                                                 r"labs-idx1-ubyte.gz declares shape \(10000000,\) .* holds at most"),
    "huge samples": ({"imgs-idx3-ubyte": (idx((1, 8193, 8193)), 8193**2)}, "per sample; resize the samples"),
    "forged huge samples": ({"imgs-idx3-ubyte": idx((1, 65535, 65535), bytes(16))}, "but holds at most 16 bytes"),
    "counts differ": ({"imgs-idx3-ubyte": idx((3, 2, 2), bytes(12)), "labs-idx1-ubyte": idx((4,), bytes(4))},
                      "holds 3 images but .* holds 4 labels"),
    "labels option names an images file": ({"imgs-idx3-ubyte": idx((3, 2, 2), bytes(12)), "labs-idx1-ubyte": idx((3, 2, 2), bytes(12))},
                                           r"holds an array of shape \(3, 2, 2\), not one label per sample"),
    "header truncated": ({"imgs-idx3-ubyte": bytes([0, 0, 8, 3, 0, 0])}, "ends inside its header"),
    "gzip stream corrupt": ({"imgs-idx3-ubyte.gz": b"\x1f\x8b\x08\x00" + b"\xff" * 40}, "cannot read"),
    "gzip stream truncated": ({"imgs-idx3-ubyte.gz": gzip.compress(idx((3, 2, 2), bytes(12)) * 50)[:14]}, "cannot read"),
}


@pytest.mark.parametrize("case", sorted(IDX))
def test_hostile_idx(refused, tmp_path, case):
    files, message = IDX[case]
    for name, data in files.items():
        if isinstance(data, tuple):  # (header, data bytes): a sparse file of that size
            (tmp_path / name).write_bytes(data[0])
            os.truncate(tmp_path / name, len(data[0]) + data[1])
        else:
            (tmp_path / name).write_bytes(data)
    images = tmp_path / next(n for n in files if n.startswith("imgs"))
    labels = next((tmp_path / n for n in files if n.startswith("labs")), tmp_path / "missing-labels")
    refused(message, *evaluate(images, "--labels", labels, "--json", tmp_path / "out.json"))


# ---- image folders ----------------------------------------------------------------------------------
def test_non_image_first_file(refused, tmp_path):
    root = image_folder(tmp_path / "imgs", ("a.png", b"this is text, not a PNG\n"))
    refused("cannot read image .*a.png: cannot identify image file", *evaluate(root))


def test_truncated_image(refused, tmp_path):
    root = image_folder(tmp_path / "imgs", ("a.png", png(2, 2, b"\x00\x01\x02" * 2)[:40]))
    refused("cannot read image .*a.png", *evaluate(root))


def test_folder_named_like_an_image(refused, tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "a" / "x.png").mkdir()
    refused("x.png is a folder, not an image file", *evaluate(root))


def test_symlink_loop_named_like_an_image(refused, tmp_path):
    root = image_folder(tmp_path / "imgs")
    os.symlink("loop.png", root / "a" / "loop.png")
    refused("cannot open image .*loop.png: Too many levels of symbolic links", *evaluate(root))


def refused_without_blocking(tmp_path: Path, message: str, *args) -> None:
    """As ``refused``, in a child process with a timeout: opening a FIFO would block forever."""
    before = files_under(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "onnxfault.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)
    assert message in one_error_line(proc.returncode, proc.stderr, proc.stdout + proc.stderr)
    assert files_under(tmp_path) == before


def test_fifo_named_like_an_image(tmp_path):
    root = image_folder(tmp_path / "imgs")
    os.mkfifo(root / "a" / "p.png")
    refused_without_blocking(tmp_path, "p.png is a FIFO (named pipe), not an image file", *evaluate(root))


@pytest.mark.parametrize("side", [10_000, 30_000])  # over Pillow's limit (a warning), over twice it (an error)
def test_decompression_bomb(refused, tmp_path, side):
    root = image_folder(tmp_path / "imgs", ("a.png", png(side, side)))
    refused("a.png has more than .* pixels .*MAX_IMAGE_PIXELS", *evaluate(root))


def test_unlistable_class_folder(refused, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can list any folder")
    root = image_folder(tmp_path / "imgs")
    (root / "b").chmod(0)
    try:
        refused("cannot list .*b: Permission denied", *evaluate(root))
    finally:
        (root / "b").chmod(0o755)


# ---- --data / --labels that are not regular files ----------------------------------------------------
def test_data_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "data.npz"
    os.mkfifo(fifo)
    refused_without_blocking(tmp_path, "data.npz is a FIFO (named pipe), not a regular file or folder",
                             *evaluate(fifo, "--json", tmp_path / "out.json"))


def test_labels_fifo_is_refused(tmp_path):
    images = tmp_path / "imgs-idx3-ubyte"
    images.write_bytes(idx((3, 2, 2), bytes(12)))
    os.mkfifo(tmp_path / "labels")
    refused_without_blocking(tmp_path, "labels is a FIFO", *evaluate(images, "--labels", tmp_path / "labels"))


def test_data_socket(refused, tmp_path):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        refused("is a socket, not a regular file", *evaluate(path))


@pytest.mark.parametrize("path, message", [("/dev/null", "is a character device"),
                                           ("/proc/self/status", "is empty \\(or a virtual file such as /proc")])
def test_data_device_or_proc_file(refused, path, message):
    refused(message, *evaluate(path))


def test_data_symlink_loop(refused, tmp_path):
    os.symlink("loop", tmp_path / "loop")
    refused("cannot open .*loop: Too many levels of symbolic links; check --data", *evaluate(tmp_path / "loop"))


def test_data_empty_file(refused, tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    refused("empty.npz is empty", *evaluate(tmp_path / "empty.npz"))


# ---- CIFAR batches (data-only pickles) --------------------------------------------------------------
CIFAR = {
    "truncated": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)[:-40],
    "memo key missing": b"\x80\x02h\x05.",  # BINGET of a memo slot never set
    "labels nested": pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1, 2]]}, protocol=2),
    "labels a deep list": pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [[[[[[[[0]]]]]]]]}, protocol=2),
}


@pytest.mark.parametrize("case", sorted(CIFAR))
def test_hostile_cifar_batch(refused, tmp_path, case):
    path = tmp_path / "data_batch_1"
    path.write_bytes(CIFAR[case])
    refused("not a CIFAR python batch|labels in .*data_batch_1", *evaluate(path))


# ---- models that are not ONNX, and external data that onnx refuses -----------------------------------
def test_keras_json_given_as_model(refused, tmp_path):
    model = tmp_path / "model.json"
    model.write_text('{"class_name": "Sequential", "config": []}')
    refused(f"{model} is a Keras architecture \\(JSON\\), not an ONNX model; convert it first: onnxfault convert "
            f"{model} --weights {tmp_path / 'model.h5'} -o {tmp_path / 'model.onnx'}$",
            "localize", model, "--data", EXAMPLES / "mnist_sample.npz")


def test_keras_h5_given_as_model(refused, tmp_path):
    model = tmp_path / "model.h5"
    model.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    refused(f"is a Keras HDF5 file, not an ONNX model; convert it first: onnxfault convert {model} -o "
            f"{tmp_path / 'model.onnx'}$", "localize", model, "--data", EXAMPLES / "mnist_sample.npz")


def test_keras_json_renamed_to_onnx(refused, tmp_path):
    model = tmp_path / "net.onnx"
    model.write_text('  {"class_name": "Model"}')
    refused("is a Keras architecture .*rename it to net.json, then convert it first: onnxfault convert",
            "inspect", model)


def test_keras3_file_given_as_model(refused, tmp_path):
    model = tmp_path / "m.keras"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("config.json", "{}")
    refused("is a Keras 3 model, not an ONNX model; convert it first: onnxfault convert", "inspect", model)


def external_model(folder: Path, location: str) -> Path:
    """An identity-like model whose weight lives in external data at ``location``."""
    weight = init("W", np.eye(2, dtype=np.float32))
    onnx.external_data_helper.set_external_data(weight, location)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("how", ["outside", "symlink", "hardlink", "absolute"])
def test_external_data_onnx_refuses(refused, tmp_path, how):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.eye(2, dtype=np.float32).tobytes())
    location = {"outside": "../secret.bin", "absolute": str(secret)}.get(how, "w.bin")
    model = external_model(tmp_path, location)
    if how == "symlink":
        os.symlink(secret, model.parent / "w.bin")
    elif how == "hardlink":
        os.link(secret, model.parent / "w.bin")
    refused("refers to external data onnx refuses to read|fails the ONNX checker", "inspect", model)


def test_external_data_inside_the_folder_loads(cli, tmp_path):
    model = external_model(tmp_path, "w.bin")
    (model.parent / "w.bin").write_bytes(np.eye(2, dtype=np.float32).tobytes())
    result = cli("inspect", model, "--json")
    assert result.exit_code == 0, result.output


# ---- malformed Keras JSON at convert ----------------------------------------------------------------
KERAS_JSON = {
    "top level is a list": "[1, 2, 3]",
    "config is a string": '{"class_name": "Sequential", "config": "layers"}',
    "layer without config": '{"class_name": "Sequential", "config": [{"class_name": "Dense"}]}',
    "functional without layers": '{"class_name": "Model", "config": {}}',
    "inbound nodes malformed": ('{"class_name": "Model", "config": {"layers": [{"class_name": "Dense", "config": {"name": "d"},'
                                ' "inbound_nodes": [[1]]}], "input_layers": [], "output_layers": []}}'),
    "nested 100000 deep": "[" * 100_000 + "]" * 100_000,
    "not UTF-8": b"\xff\xfe{}",
}


@pytest.mark.parametrize("case", sorted(KERAS_JSON))
def test_malformed_keras_json(refused, tmp_path, case):
    text = KERAS_JSON[case]
    source = tmp_path / "model.json"
    source.write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp_path / "model.h5").write_bytes(b"")
    refused("model.json is not Keras model JSON \\(.*\\); give model.to_json\\(\\) output",
            "convert", source, "-o", tmp_path / "out.onnx")


# ---- memory: a tiny file must not make the process allocate gigabytes -------------------------------
def run_limited(args, cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a child process whose address space is capped at ``MEMORY_LIMIT``."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
        sys.argv = ["onnxfault", *sys.argv[1:]]
        from onnxfault.cli import main
        main()
    """)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def memory_case(tmp_path: Path, case: str) -> Path:
    if case == "npz y declares 2.4 GB":
        return npz(tmp_path / "d.npz", {"x": npy((10, 28, 28), data=bytes(7840)), "y": npy((300_000_000,), "<i8", bytes(8))})
    if case == "npz y over the sample limit":  # honest zeros: 16 MB of labels in a few kB
        return npz(tmp_path / "d.npz", {"x": npy((1, 28, 28), data=bytes(784)), "y": npy_of(np.zeros(MAX_SAMPLES + 1, np.uint8))})
    if case == "npz x rows of 4 GB":
        return npz(tmp_path / "d.npz", {"x": npy((2, 2**16, 2**16), data=bytes(64)), "y": npy((2,), "<i8", bytes(16))})
    if case == "idx gz labels declare 4 GB":
        (tmp_path / "i-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx((2**32 - 1,), bytes(4096))))
        (tmp_path / "i-images-idx3-ubyte").write_bytes(idx((2**32 - 1, 1, 1), bytes(4096)))
        return tmp_path / "i-images-idx3-ubyte"
    root = image_folder(tmp_path / "imgs", ("a.png", png(40_000, 40_000)))
    return root


MEMORY = ["npz y declares 2.4 GB", "npz y over the sample limit", "npz x rows of 4 GB", "idx gz labels declare 4 GB",
          "image bomb"]


@pytest.mark.parametrize("case", MEMORY)
def test_memory_from_a_tiny_file(tmp_path, case):
    data = memory_case(tmp_path, case)
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) < 2**20  # a tiny file
    before = files_under(tmp_path)
    proc = run_limited(evaluate(data, "--json", tmp_path / "out.json"), tmp_path)
    line = one_error_line(proc.returncode, proc.stderr, proc.stdout + proc.stderr)
    assert "declares" in line or "more than" in line, line
    assert files_under(tmp_path) == before


# ---- generated bytes: a reader either reads them or says why, in one OnnxFaultError ------------------
def read_all(path: Path) -> None:
    source = open_source(path)
    for _ in source.chunks(64):
        pass


def assert_only_onnxfault_errors(path: Path) -> None:
    try:
        read_all(path)
    except OnnxFaultError as err:
        assert "\n" not in str(err)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
shapes = st.lists(st.integers(0, 2**33), min_size=0, max_size=4).map(tuple)
dtypes = st.sampled_from(["<u1", "<i8", ">f4", "<f8", "<c8", "|b1", "<U3", "|O"])


@FUZZ
@given(x_shape=shapes, y_shape=shapes, x_dtype=dtypes, y_dtype=dtypes, x_data=st.binary(max_size=256),
       y_data=st.binary(max_size=64), stored=st.booleans(), cut=st.integers(0, 400))
def test_generated_npz(tmp_path, x_shape, y_shape, x_dtype, y_dtype, x_data, y_data, stored, cut):
    path = npz(tmp_path / "g.npz", {"x": npy(x_shape, x_dtype, x_data), "y": npy(y_shape, y_dtype, y_data)},
               zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - cut] if cut < len(raw) else raw)
    assert_only_onnxfault_errors(path)


@FUZZ
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=4), label_dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=2),
       code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x07]), data=st.binary(max_size=512),
       compress=st.booleans())
def test_generated_idx(tmp_path, dims, label_dims, code, data, compress):
    wrap = gzip.compress if compress else (lambda b: b)
    images = tmp_path / "g-images-idx3-ubyte"
    images.write_bytes(wrap(idx(dims, data, code)))
    (tmp_path / "g-labels-idx1-ubyte").write_bytes(wrap(idx(label_dims, data[:64])))
    assert_only_onnxfault_errors(images)


@FUZZ
@given(data=st.binary(min_size=1, max_size=2048))
def test_generated_bytes_as_data(tmp_path, data):
    path = tmp_path / "g.bin"
    path.write_bytes(data)
    assert_only_onnxfault_errors(path)

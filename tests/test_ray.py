"""Ray as the distributed engine, on a local Ray runtime (loopback, started once for the module): spectra,
confusion matrices and synthesized inputs are the single-process run's exactly, for 1, 2 and 3 workers; a
worker killed mid-run is retried; npz shards and Parquet files are data; an unreachable address is one line."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from onnxfault.data import DataOptions, open_dataset  # noqa: E402
from onnxfault.distributed import RayOptions  # noqa: E402
from onnxfault.evaluation import evaluate  # noqa: E402
from onnxfault.localization import localize  # noqa: E402
from onnxfault.model import load_model  # noqa: E402
from onnxfault.synthesis import synthesize  # noqa: E402

WORKERS = (1, 2, 3)


@pytest.fixture(scope="module", autouse=True)
def ray_runtime():
    """One local Ray runtime for the module: every run below joins it (and leaves it running)."""
    ray.init(address="local", num_cpus=max(WORKERS), include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1", configure_logging=True, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> Path:
    """The 2,000 shipped samples ten times over (20,000, stored uncompressed): long enough to kill a worker."""
    data = np.load(Path(__file__).resolve().parents[1] / "examples" / "mnist_sample.npz")
    path = tmp_path_factory.mktemp("tiled") / "tiled.npz"
    np.savez(path, x=np.tile(data["x"], (10, 1, 1)), y=np.tile(data["y"], 10))
    return path


def _same_localization(a, b) -> None:
    assert np.array_equal(a.spectrum.counts, b.spectrum.counts)
    assert (a.spectrum.samples, a.spectrum.failing, a.spectrum.correct) == \
        (b.spectrum.samples, b.spectrum.failing, b.spectrum.correct)
    assert np.array_equal(a.scores, b.scores)
    assert [n.to_json() for n in a.neurons] == [n.to_json() for n in b.neurons]


@pytest.mark.parametrize("workers", WORKERS)
def test_spectrum_and_confusion_match_one_process(lenet_onnx, sample_npz, workers):
    options = DataOptions(batch_size=100)
    single = localize(lenet_onnx, sample_npz, data_options=options)
    seen: list[int] = []
    spread = localize(lenet_onnx, sample_npz, data_options=options, ray=RayOptions("local", workers),
                      on_batch=seen.append)
    _same_localization(single, spread)
    assert sum(seen) == 2000 and spread.spectrum.samples == 2000  # progress: every sample once, across workers
    assert spread.spectrum.failing > 0
    one = evaluate(lenet_onnx, sample_npz, data_options=options)
    many = evaluate(lenet_onnx, sample_npz, data_options=options, ray=RayOptions("local", workers))
    assert np.array_equal(one.confusion, many.confusion) and many.samples == 2000


def test_dense_model_class_mode_and_element_granularity(dense_onnx, sample_npz):
    kwargs = dict(cls=3, granularity="element", data_options=DataOptions(batch_size=32))
    _same_localization(localize(dense_onnx, sample_npz, **kwargs),
                       localize(dense_onnx, sample_npz, ray=RayOptions("local", 2), **kwargs))


@pytest.mark.parametrize("method", ["fgsm", "deepfault"])
def test_synthesized_inputs_are_the_same_bytes(lenet_onnx, sample_npz, method):
    kwargs = dict(method=method, samples=5, data_options=DataOptions(batch_size=16))  # 50 seeds, 4 chunks
    single = synthesize(lenet_onnx, sample_npz, **kwargs)
    for workers in WORKERS:
        spread = synthesize(lenet_onnx, sample_npz, ray=RayOptions("local", workers), **kwargs)
        for name, array in single.arrays.items():
            assert array.tobytes() == spread.arrays[name].tobytes(), (workers, name)
        assert spread.report["neurons"] == single.report["neurons"]
        assert spread.report["device"] == single.report["device"]


def test_deepsensor_inputs_and_counts(dense_onnx, sample_npz):
    kwargs = dict(method="deepsensor", samples=3, iterations=3, options={"population": 8},
                  data_options=DataOptions(batch_size=8))  # 30 seeds in 4 chunks
    single = synthesize(dense_onnx, sample_npz, **kwargs)
    spread = synthesize(dense_onnx, sample_npz, ray=RayOptions("local", 2), **kwargs)
    assert single.arrays["synthesized"].tobytes() == spread.arrays["synthesized"].tobytes()
    counted = ("test_errors", "error_categories", "seeds_with_errors", "examples_evaluated", "best_errors",
               "best_examples", "seeds_reaching_stop_fitness", "neurons_total")
    assert {k: single.report[k] for k in counted} == {k: spread.report[k] for k in counted}
    assert single.report["examples_evaluated"] > 0
    assert spread.report["mean_best_fitness"] == pytest.approx(single.report["mean_best_fitness"], rel=1e-12)


def test_deephunter_boundaries_inputs_and_counts(lenet_onnx, sample_npz):
    """The boundaries are found once on the driver and each chunk keeps its own section table, so the workers
    find what one process finds."""
    kwargs = dict(method="deephunter", samples=2, iterations=3, options={"mutants": 4},
                  data_options=DataOptions(batch_size=8))  # 20 seeds in 3 chunks
    single = synthesize(lenet_onnx, sample_npz, **kwargs)
    spread = synthesize(lenet_onnx, sample_npz, ray=RayOptions("local", 2), **kwargs)
    assert single.arrays["synthesized"].tobytes() == spread.arrays["synthesized"].tobytes()
    counted = ("test_errors", "error_categories", "seeds_with_errors", "mutations", "mutants_given_up", "queued",
               "coverage_after", "boundary_samples")
    assert {k: single.report[k] for k in counted} == {k: spread.report[k] for k in counted}
    assert single.report["mutations"] > 0 and single.report["boundary_samples"] == 1000


def _kill_a_busy_worker() -> int | None:
    """SIGKILL one worker process that is counting a shard (Ray titles it ray::ShardWorker.run)."""
    for pid in os.listdir("/proc"):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            continue
        if title.startswith(b"ray::ShardWorker.run"):
            os.kill(int(pid), signal.SIGKILL)
            return int(pid)
    return None


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds worker processes in /proc")
def test_killed_worker_is_retried_and_counts_stay_exact(lenet_onnx, tiled):
    options = DataOptions(batch_size=256)
    single = localize(lenet_onnx, tiled, data_options=options)
    seen: list[int] = []
    killed: list[tuple[int, int]] = []

    def on_batch(n: int) -> None:
        seen.append(n)
        if not killed and sum(seen) < 20000:
            pid = _kill_a_busy_worker()
            if pid is not None:
                killed.append((pid, sum(seen)))

    spread = localize(lenet_onnx, tiled, data_options=options, ray=RayOptions("local", 2), on_batch=on_batch)
    assert killed, "no worker was busy when progress first came in"
    assert killed[0][1] < 20000  # killed mid-run
    assert not Path(f"/proc/{killed[0][0]}").exists() or b"zombie" in Path(f"/proc/{killed[0][0]}/status").read_bytes().lower()
    _same_localization(single, spread)
    assert sum(seen) == 20000  # the retried shard is counted once


@pytest.fixture(scope="module")
def cluster_data(tmp_path_factory) -> dict[str, Path]:
    """The shipped samples as a folder of .npz shards and as Parquet (PNG bytes; uint8 arrays)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    data = np.load(Path(__file__).resolve().parents[1] / "examples" / "mnist_sample.npz")
    x, y = data["x"], data["y"]
    root = tmp_path_factory.mktemp("cluster")
    shards = root / "shards"
    shards.mkdir()
    for i, start in enumerate(range(0, len(x), 700)):  # 700, 700, 600: shards cut across batches
        np.savez(shards / f"part-{i:03d}.npz", x=x[start:start + 700], y=y[start:start + 700])

    def png(a: np.ndarray) -> bytes:
        out = io.BytesIO()
        Image.fromarray(a).save(out, format="PNG")
        return out.getvalue()

    pq.write_table(pa.table({"image": [png(a) for a in x], "label": y}), root / "images.parquet", row_group_size=300)
    rows = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[2])
    arrays = pa.ListArray.from_arrays(np.arange(0, len(rows) + 1, x.shape[1], dtype=np.int32), rows)
    pq.write_table(pa.table({"x": arrays, "y": y}), root / "arrays.parquet", row_group_size=450)
    return {"shards": shards, "images": root / "images.parquet", "arrays": root / "arrays.parquet"}


@pytest.mark.parametrize("kind", ["shards", "images", "arrays"])
def test_cluster_data_as_data(lenet_onnx, sample_npz, cluster_data, kind):
    options = DataOptions(batch_size=128)
    single = localize(lenet_onnx, sample_npz, data_options=options)
    spread = localize(lenet_onnx, cluster_data[kind], data_options=options, ray=RayOptions("local", 2))
    _same_localization(single, spread)


def test_unreachable_address_is_one_line(lenet_onnx, sample_npz):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([sys.executable, "-m", "onnxfault.cli", "localize", str(lenet_onnx), "--data",
                           str(sample_npz), "--ray", f"ray://127.0.0.1:{port}", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach a Ray cluster at ray://127.0.0.1:{port}")
    assert "ray start --head" in lines[0] and "Traceback" not in done.stderr and not done.stdout


def test_workers_needs_ray(lenet_onnx, sample_npz):
    done = subprocess.run([sys.executable, "-m", "onnxfault.cli", "evaluate", str(lenet_onnx), "--data",
                           str(sample_npz), "--workers", "2", "-q"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.startswith("error: --workers sets the number of Ray workers")



@pytest.mark.parametrize("flags, said", [(["--ray", "local", "--workers", "0"], "error: --workers must be at least 1 (got 0)"),
                                         (["--ray", " "], "error: --ray needs an address: local, auto, HOST:PORT or ray://HOST:PORT")])
def test_bad_ray_flags_are_one_line(lenet_onnx, sample_npz, tmp_path, flags, said):
    done = subprocess.run([sys.executable, "-m", "onnxfault.cli", "localize", str(lenet_onnx), "--data",
                           str(sample_npz), *flags, "--json", str(tmp_path / "top.json"), "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [said]
    assert "Traceback" not in done.stderr and not done.stdout and not list(tmp_path.iterdir())

def test_cli_progress_and_results_over_ray(lenet_onnx, sample_npz, tmp_path):
    """The CLI runs with --ray local --workers 2 in its own process and writes what the single run writes."""
    import json

    outputs = {}
    for name, extra in (("single", []), ("ray", ["--ray", "local", "--workers", "2"])):
        path = tmp_path / f"{name}.json"
        done = subprocess.run([sys.executable, "-m", "onnxfault.cli", "evaluate", str(lenet_onnx), "--data",
                               str(sample_npz), "--json", str(path), "-q", *extra],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outputs[name] = json.loads(path.read_text())
    assert outputs["ray"]["confusion"] == outputs["single"]["confusion"]
    assert outputs["ray"]["correct"] == outputs["single"]["correct"] == 1962


def test_shards_are_whole_batches_and_streams_are_read_once_per_worker(mnist_images, sample_npz, tiled):
    from onnxfault.distributed.shards import plan_shards

    model = load_model(Path(__file__).resolve().parents[1] / "examples" / "mnist_lenet.onnx")
    stored = open_dataset(tiled, model.input_shape, DataOptions(batch_size=32))  # seekable: many shards
    shards = plan_shards(stored, 2)
    assert shards[0][0] == 0 and shards[-1][1] == 20000 and len(shards) == 16
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    assert all(start % 32 == 0 for start, _ in shards)
    expected = {mnist_images: [(0, 3360), (3360, 6720), (6720, 10000)], sample_npz: [(0, 672), (672, 1344), (1344, 2000)]}
    for stream, shards in expected.items():  # gzip IDX and a deflated npz are read from their start: one per worker
        assert plan_shards(open_dataset(stream, model.input_shape, DataOptions(batch_size=32)), 3) == shards


def test_a_text_model_with_two_inputs_counts_and_synthesizes_on_ray_as_in_one_process(tmp_path):
    """Token ids and attention masks (one npz member per input) are sharded like any data: the spectrum and the
    fgsm inputs (chunks carry the seeds' masks) equal the single-process run's exactly."""
    pytest.importorskip("transformers")
    from foreign_models import export_text, text_classifier, token_data

    model = export_text(text_classifier("bert"), tmp_path / "bert.onnx")
    np.savez(tmp_path / "tokens.npz", **token_data())
    data = str(tmp_path / "tokens.npz")
    options = DataOptions(batch_size=40)
    one = localize(model, data, k=5, data_options=options)
    spread = localize(model, data, k=5, data_options=options, ray=RayOptions("auto", 2))
    _same_localization(one, spread)
    alone = synthesize(model, data, method="fgsm", samples=3, data_options=DataOptions(batch_size=4))
    shared = synthesize(model, data, method="fgsm", samples=3, data_options=DataOptions(batch_size=4),
                        ray=RayOptions("auto", 2))
    for key in ("synthesized", "input_ids", "attention_mask", "predictions_after"):
        assert np.array_equal(alone.arrays[key], shared.arrays[key]), key

"""Hostile output: interruptions (real SIGINT/SIGTERM) at several points of a run, outputs that cannot be
written, folders replaced, concurrent runs. Outputs land whole or not at all, and nothing is left behind.

End-to-end cases run the real CLI in a subprocess through a small driver that sends the process a real signal
at a chosen call (``module:function[:text in its arguments]``), so each point is hit deterministically.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onnxfault import files, interrupts
from onnxfault.errors import OnnxFaultError
from onnxfault.synthesis.output import check_out_dir

ROOT = Path(__file__).resolve().parents[1]
MODEL, DATA = ROOT / "examples" / "mnist_dense.onnx", ROOT / "examples" / "mnist_sample.npz"
RUN = {"inputs.npz", "report.json", "samples.png", ".onnxfault-run"}
EXIT = {"SIGINT": 130, "SIGTERM": 143}

DRIVER = """
import importlib, os, signal, sys
module_name, attr, needle = (sys.argv[1].split(":") + [""])[:3]
sig = getattr(signal, sys.argv[2])
module = importlib.import_module(module_name)
original = getattr(module, attr)
def hooked(*args, **kwargs):
    if not hooked.fired and needle in " ".join(map(str, [*args, *kwargs.values()])):
        hooked.fired = True
        os.kill(os.getpid(), sig)
    return original(*args, **kwargs)
hooked.fired = False
setattr(module, attr, hooked)
sys.argv = ["onnxfault", *sys.argv[3:]]
from onnxfault.cli import main
main()
"""


def onnxfault(*args, hook: str | None = None, sig: str = "SIGTERM", cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI in ``cwd``; with ``hook``, the process signals itself when that call is first made."""
    command = [sys.executable, "-c", DRIVER, hook, sig] if hook else [sys.executable, "-m", "onnxfault.cli"]
    return subprocess.run([*command, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def synthesize(out: str = "run", *extra) -> list:
    return ["synthesize", MODEL, "--data", DATA, "--method", "fgsm", "--samples", "1", "--out", out, "-q", *extra]


def localize(*extra) -> list:
    return ["localize", MODEL, "--data", DATA, "-q", *extra]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed run (and no traceback)."""
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def listing(folder: Path) -> set[str]:
    """Every entry under ``folder`` (hidden ones too), as relative paths."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} | {p.name for p in folder.iterdir()}


def old_run(folder: Path) -> dict[str, str]:
    """An earlier run's folder, with a report.html that a run without --report does not write."""
    folder.mkdir()
    contents = {name: f"old {name}" for name in ("report.json", "inputs.npz", "samples.png", "report.html")}
    contents[".onnxfault-run"] = '{"run_id": "old"}'  # the marker that proves onnxfault wrote it
    for name, text in contents.items():
        (folder / name).write_text(text)
    return contents


def assert_new_run(folder: Path) -> None:
    """A complete run from one process: every file there, the report and the arrays agreeing."""
    assert {p.name for p in folder.iterdir()} == RUN
    report = json.loads((folder / "report.json").read_text())
    with np.load(folder / "inputs.npz") as arrays:
        assert len(arrays["original"]) == report["seeds"]["count"]


# ---- synthesize --out: interrupted at each point ---------------------------------------------------
@pytest.mark.parametrize("hook, sig, lands", [
    ("onnxfault.synthesis.output:picture", "SIGTERM", False),  # after the work, before any file
    ("tempfile:mkdtemp:.new", "SIGINT", False),                  # the staging folder just made
    ("onnxfault.synthesis.output:write_npz", "SIGTERM", False),  # staging half written
    # mid-swap (one atomic exchange on Linux; two renames elsewhere): held back until the swap ends
    ("onnxfault.files:_exchange:.new", "SIGINT", True) if sys.platform.startswith("linux")
    else ("os:rename:.new", "SIGINT", True),
    # removing the earlier run (after the exchange it sits at the staging path): held back too
    ("shutil:rmtree:.new", "SIGTERM", True) if sys.platform.startswith("linux")
    else ("shutil:rmtree:.old", "SIGTERM", True),
])
def test_synthesize_interrupted_leaves_the_old_run_or_the_whole_new_one(tmp_path, hook, sig, lands):
    old = old_run(tmp_path / "run")
    proc = onnxfault(*synthesize(), hook=hook, sig=sig, cwd=tmp_path)
    assert proc.returncode == EXIT[sig]
    said = f"after {tmp_path / 'run'} was written whole; nothing was half-written" if lands \
        else "; no output was half-written"  # after the commit point the message says the run landed
    assert error_line(proc) == f"error: interrupted by {sig}{' ' if lands else ''}{said}"
    assert {p.name for p in tmp_path.iterdir()} == {"run"}  # no staging or backup folder
    if lands:
        assert_new_run(tmp_path / "run")
    else:
        assert {p.name: p.read_text() for p in (tmp_path / "run").iterdir()} == old


def test_synthesize_interrupted_on_a_first_run_leaves_nothing(tmp_path):
    proc = onnxfault(*synthesize(), hook="onnxfault.synthesis.output:write_npz", sig="SIGTERM", cwd=tmp_path)
    assert proc.returncode == 143 and error_line(proc).startswith("error: interrupted by SIGTERM")
    assert listing(tmp_path) == set()


def test_sigterm_from_outside_while_staging_leaves_a_whole_state(tmp_path):
    """A real outside SIGTERM, sent when the staging folder appears: old run intact or new run whole."""
    old = old_run(tmp_path / "run")
    command = [sys.executable, "-m", "onnxfault.cli", *map(str, synthesize())]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.endswith(".new") for p in tmp_path.iterdir()):
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.001)
    stdout, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stdout + stderr
    assert proc.returncode in (0, 143)
    assert {p.name for p in tmp_path.iterdir()} == {"run"}
    if {p.name for p in (tmp_path / "run").iterdir()} == RUN:
        assert_new_run(tmp_path / "run")
    else:
        assert {p.name: p.read_text() for p in (tmp_path / "run").iterdir()} == old


def test_replacing_a_run_removes_its_stale_files_and_says_so(tmp_path):
    old_run(tmp_path / "run")
    proc = onnxfault(*synthesize(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "note: replaced the earlier run in run as a whole"
    assert listing(tmp_path) == {"run", *(f"run/{name}" for name in RUN)}
    assert_new_run(tmp_path / "run")


def test_a_folder_not_written_by_onnxfault_is_never_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    proc = onnxfault(*synthesize("mine"), cwd=tmp_path)
    assert proc.returncode == 1
    assert error_line(proc) == ("error: --out mine holds thesis.tex, not written by onnxfault, and a run replaces "
                                "the folder as a whole; give a new or empty folder")
    assert listing(tmp_path) == {"mine", "mine/thesis.tex"}


def test_concurrent_runs_on_one_folder_leave_one_whole_run(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "onnxfault.cli", *map(str, synthesize("run", "--samples", str(n)))],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (1, 2, 3)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "Traceback" not in stderr and "error:" not in stderr, stderr
    assert listing(tmp_path) == {"run", *(f"run/{name}" for name in RUN)}
    assert_new_run(tmp_path / "run")


# ---- localize --json/--spectra/--report: together or not at all ------------------------------------
def test_localize_with_an_unwritable_second_output_leaves_no_first(tmp_path):
    proc = onnxfault(*localize("--json", "a.json", "--spectra", "/proc/b.npz"), cwd=tmp_path)
    assert proc.returncode == 1
    assert "/proc/b.npz" in error_line(proc)
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("hook, sig, lands", [
    ("onnxfault.files:json_writer", "SIGTERM", False),  # results ready, nothing written yet
    ("numpy:savez_compressed", "SIGINT", False),        # a.json's temp written, b.npz's half written
    ("os:replace:a.json", "SIGTERM", True),              # renaming in: held back until all have landed
])
def test_localize_interrupted_writes_all_or_none(tmp_path, hook, sig, lands):
    (tmp_path / "a.json").write_text("old")
    proc = onnxfault(*localize("--json", "a.json", "--spectra", "b.npz", "--report"), hook=hook, sig=sig,
                     cwd=tmp_path)
    assert proc.returncode == EXIT[sig]
    assert error_line(proc).startswith(f"error: interrupted by {sig}")
    assert ("were written whole; nothing was half-written" in error_line(proc)) == lands  # what landed, said
    if lands:
        assert listing(tmp_path) == {"a.json", "a.html", "b.npz"}
        assert json.loads((tmp_path / "a.json").read_text())["neurons"]
    else:
        assert listing(tmp_path) == {"a.json"} and (tmp_path / "a.json").read_text() == "old"


# ---- the helpers in-process, with the CLI's handlers and real signals --------------------------------
@pytest.fixture
def handlers():
    before = {signum: signal.getsignal(signum) for signum in interrupts.SIGNALS}
    interrupts.install_interrupt_handlers()
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


def test_sigterm_inside_a_writer_removes_every_temp(tmp_path, handlers):
    (tmp_path / "a.txt").write_text("old")

    def killed(tmp: Path) -> None:
        tmp.write_text("half")
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(interrupts.Interrupted):
        files.write_together([(tmp_path / "a.txt", files.text_writer("new")), (tmp_path / "b.txt", killed)])
    assert listing(tmp_path) == {"a.txt"} and (tmp_path / "a.txt").read_text() == "old"


def test_signals_are_held_back_until_the_block_ends(handlers):
    done = []
    with pytest.raises(interrupts.Interrupted, match="SIGINT"):
        with interrupts.signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("finished")
    assert done == ["finished"]


def test_a_failed_rename_puts_the_earlier_files_back(tmp_path):
    """The second target turns into a folder while the first is written: neither output changes."""
    (tmp_path / "a.txt").write_text("old a")

    def write_a(tmp: Path) -> None:
        tmp.write_text("new a")
        (tmp_path / "b.txt").mkdir()  # a hostile race: b.txt is now a folder

    with pytest.raises(OnnxFaultError, match="cannot write .*b.txt"):
        files.write_together([(tmp_path / "a.txt", write_a), (tmp_path / "b.txt", files.text_writer("new b"))])
    assert listing(tmp_path) == {"a.txt", "b.txt"}
    assert (tmp_path / "a.txt").read_text() == "old a" and (tmp_path / "b.txt").is_dir()


def test_two_outputs_with_one_name_are_refused(tmp_path):
    with pytest.raises(OnnxFaultError, match="give each its own file name"):
        files.write_together([(tmp_path / "a", files.text_writer("1")), (tmp_path / "./a", files.text_writer("2"))])
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("target", ["/proc/out.json", "/sys/out.json"])
def test_a_temp_file_that_cannot_be_made_is_one_error(target):
    with pytest.raises(OnnxFaultError, match=f"cannot write .*{target}"):
        files.write_json(target, {"a": 1})


def test_a_name_of_255_bytes_is_written(tmp_path):
    name = "n" * 250 + ".json"
    files.write_json(tmp_path / name, {"a": 1})
    assert listing(tmp_path) == {name}


def test_a_failing_folder_writer_leaves_the_old_folder(tmp_path):
    old = old_run(tmp_path / "run")

    def fail(staging: Path) -> None:
        (staging / "report.json").write_text("new")
        raise OnnxFaultError("boom")

    with pytest.raises(OnnxFaultError, match="boom"):
        files.write_folder(tmp_path / "run", fail)
    assert {p.name for p in tmp_path.iterdir()} == {"run"}
    assert {p.name: p.read_text() for p in (tmp_path / "run").iterdir()} == old


def test_a_run_landing_meanwhile_is_replaced_whole(tmp_path):
    """Another run swaps its folder in while this one writes: this one moves it aside and lands whole."""
    def write(staging: Path) -> None:
        (staging / "report.json").write_text("mine")
        old_run(tmp_path / "run")  # the concurrent run lands

    assert files.write_folder(tmp_path / "run", write) is True
    assert listing(tmp_path) == {"run", "run/report.json"}
    assert (tmp_path / "run" / "report.json").read_text() == "mine"


def test_a_symlinked_out_replaces_the_folder_it_points_to(tmp_path):
    old_run(tmp_path / "real")
    (tmp_path / "link").symlink_to("real")
    real = check_out_dir(tmp_path / "link")
    files.write_folder(real, lambda staging: (staging / "report.json").write_text("new"))
    assert (tmp_path / "link").is_symlink() and listing(tmp_path / "real") == {"report.json"}


@pytest.mark.parametrize("out, message", [
    ("file", "`out` file is a file; give a folder"),
    (".", "`out` . is the current folder or above it"),
    ("missing/run", "cannot write to `out` missing/run: its folder is missing"),
])
def test_bad_out_folders_are_refused(tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OnnxFaultError, match=message.replace(".", r"\.")):
        check_out_dir(out)
    assert listing(tmp_path) == {"file"}

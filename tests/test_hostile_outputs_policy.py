"""Issue 23, items 1, 5 and 6: one output policy, one guarded reader, whole runs. An output never replaces a file the run reads (by name, through a link, or
as a hard link), never a device, keeps an existing file's mode, and ``--out`` ownership is proven by the marker an
onnxfault run writes, never by file names. ``-`` writes to stdout."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

import onnxfault
from test_hostile_data import run_limited

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A model, data and a localize JSON in a folder of their own (the current folder)."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLES / "mnist_dense.onnx", tmp_path / "m.onnx")
    shutil.copy(EXAMPLES / "mnist_sample.npz", tmp_path / "d.npz")
    return tmp_path


def snapshot(folder: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every entry under ``folder``: its bytes (None for a folder or a link) and its mode."""
    found = {}
    for path in sorted(folder.rglob("*")):
        data = path.read_bytes() if stat.S_ISREG(os.lstat(path).st_mode) else None  # never open a FIFO
        found[str(path.relative_to(folder))] = (data, stat.S_IMODE(os.lstat(path).st_mode))
    return found


def refused(result, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args, message", [
    (["localize", "m.onnx", "--data", "d.npz", "--json", "m.onnx"], "--json m.onnx is m.onnx, which this run reads"),
    (["localize", "m.onnx", "--data", "d.npz", "--json", "r.json", "--spectra", "d.npz"],
     "--spectra d.npz is d.npz, which this run reads"),
    (["evaluate", "m.onnx", "--data", "d.npz", "--json", "d.npz"], "--json d.npz is d.npz, which this run reads"),
    (["evaluate", "m.onnx", "--data", "d.npz", "--json", "hard.npz"], "--json hard.npz is d.npz, which this run reads"),
    (["evaluate", "m.onnx", "--data", "d.npz", "--json", "soft.npz"], "--json soft.npz is d.npz, which this run reads"),
    (["compare", "m.onnx", "m.onnx", "--data", "d.npz", "--json", "m.onnx"], "--json m.onnx is m.onnx"),
    (["report", "old.json", "-o", "old.json"], "-o old.json is old.json, which this run reads"),
    (["report", "run", "-o", "run/report.json"], "-o run/report.json is run/report.json, which this run reads"),
    (["report", "run", "-o", "run/inputs.npz"], "-o run/inputs.npz is run/inputs.npz, which this run reads"),
    (["synthesize", "m.onnx", "--data", "run/inputs.npz", "--method", "fgsm", "--out", "run"],
     "--out run holds run/inputs.npz, which this run reads"),  # an earlier run's folder, replaced as a whole
    (["synthesize", "m.onnx", "--data", "d.npz", "--method", "fgsm", "--out", "mine"],
     "--out mine holds report.html but no .onnxfault-run marker, so onnxfault did not write it"),
    (["evaluate", "m.onnx", "--data", "d.npz", "--json", "/dev/null"],
     "--json /dev/null is not a regular file (a device, pipe or socket)"),
    (["convert", "net.json", "-o", "net.h5"], "output net.h5 is net.h5, which this run reads"),
])
def test_an_output_never_replaces_what_the_run_reads(cli, work, args, message):
    os.link(work / "d.npz", work / "hard.npz")
    (work / "soft.npz").symlink_to("d.npz")
    (work / "mine").mkdir()
    (work / "mine" / "report.html").write_text("my own notes")  # a run's file name, but the user's file
    assert cli("localize", "m.onnx", "--data", "d.npz", "--json", "old.json", "-q").exit_code == 0
    assert cli("synthesize", "m.onnx", "--data", "d.npz", "--method", "fgsm", "--samples", "1", "--out", "run",
               "-q").exit_code == 0
    (work / "net.json").write_text("{}")
    (work / "net.h5").write_bytes(b"weights")
    before = snapshot(work)
    refused(cli(*args), message)
    assert snapshot(work) == before  # nothing written, nothing replaced, no temp left
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_replaced_file_keeps_its_mode_and_a_link_stays_a_link(cli, work):
    (work / "mine.json").write_text("{}")
    os.chmod(work / "mine.json", 0o600)
    (work / "link.json").symlink_to("mine.json")
    assert cli("evaluate", "m.onnx", "--data", "d.npz", "--json", "mine.json", "-q").exit_code == 0
    assert stat.S_IMODE(os.stat(work / "mine.json").st_mode) == 0o600
    assert json.loads((work / "mine.json").read_text())["kind"] == "evaluate"
    (work / "mine.json").write_text("{}")
    assert cli("evaluate", "m.onnx", "--data", "d.npz", "--json", "link.json", "-q").exit_code == 0
    assert (work / "link.json").is_symlink() and os.readlink(work / "link.json") == "mine.json"
    assert json.loads((work / "mine.json").read_text())["kind"] == "evaluate"  # written through the link
    assert stat.S_IMODE(os.stat(work / "mine.json").st_mode) == 0o600


def test_a_dash_writes_to_stdout(cli, work):
    evaluated = cli("evaluate", "m.onnx", "--data", "d.npz", "--json", "-")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["accuracy"] == 0.942
    ranked = cli("localize", "m.onnx", "--data", "d.npz", "-k", "3", "--json", "-")
    assert ranked.exit_code == 0 and len(json.loads(ranked.stdout)["neurons"]) == 3
    compared = cli("compare", "m.onnx", "m.onnx", "--data", "d.npz", "-k", "2", "--json", "-")
    assert compared.exit_code == 0 and json.loads(compared.stdout)["kind"] == "compare"
    (work / "r.json").write_text(ranked.stdout)
    page = cli("report", "r.json", "-o", "-")
    assert page.exit_code == 0 and page.stdout.startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in work.iterdir()) == ["d.npz", "m.onnx", "r.json"]  # no file named -
    refused(cli("localize", "m.onnx", "--data", "d.npz", "--json", "-", "--report"),
            "--report writes the page beside the --json file")


def test_run_ownership_is_the_marker_and_a_run_is_replaced_whole(cli, work):
    args = ("synthesize", "m.onnx", "--data", "d.npz", "--method", "fgsm", "--samples", "1", "--out", "run", "-q")
    assert cli(*args).exit_code == 0
    first = json.loads((work / "run" / ".onnxfault-run").read_text())["run_id"]
    assert json.loads((work / "run" / "report.json").read_text())["run_id"] == first
    with np.load(work / "run" / "inputs.npz") as arrays:
        assert str(arrays["run_id"]) == first
    again = cli(*args)
    assert again.exit_code == 0 and "replaced the earlier run" in again.stderr
    assert json.loads((work / "run" / ".onnxfault-run").read_text())["run_id"] != first
    (work / "run" / ".onnxfault-run").unlink()  # without the marker the folder is no longer onnxfault's
    before = snapshot(work)
    refused(cli(*args), "holds inputs.npz and 2 more but no .onnxfault-run marker")
    assert snapshot(work) == before


def test_readers_refuse_a_report_and_arrays_of_different_runs(cli, work):
    for out in ("a", "b"):
        assert cli("synthesize", "m.onnx", "--data", "d.npz", "--method", "fgsm", "--samples", "1", "--out", out,
                   "-q").exit_code == 0
    shutil.copy(work / "b" / "inputs.npz", work / "a" / "inputs.npz")  # what a reader saw mid-swap before
    refused(cli("report", "a", "-o", "page.html"), "does not come from the run its report.json describes")
    assert not (work / "page.html").exists()
    with pytest.raises(onnxfault.OnnxFaultError, match="does not come from the run its report.json describes"):
        onnxfault.load(work / "a")


# ---- item 5: every file a command reads gets the --data guard -------------------------------------------------
def inflate(npz: Path, claimed: int) -> None:
    """Make every member of the zip ``npz`` claim ``claimed`` uncompressed bytes (local and central headers)."""
    raw = bytearray(npz.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = raw.find(signature)
        while start != -1:
            raw[start + offset:start + offset + 4] = claimed.to_bytes(4, "little")
            start = raw.find(signature, start + 4)
    npz.write_bytes(bytes(raw))


@pytest.mark.parametrize("case, message", [
    ("fifo", "rank.json is a FIFO (named pipe), not a regular file"),
    ("zero", "/dev/zero is a character device, not a regular file"),
    ("huge", "more than any result onnxfault writes"),
])
def test_a_neurons_file_is_read_only_when_it_is_a_regular_file(cli, work, case, message):
    path = {"fifo": work / "rank.json", "zero": Path("/dev/zero"), "huge": work / "huge.json"}[case]
    if case == "fifo":
        os.mkfifo(path)
    if case == "huge":
        with open(path, "wb") as fh:  # sparse: claims more than a result could be, costs no disk
            fh.truncate((1 << 30) + 1)
    before = snapshot(work)
    refused(cli("synthesize", "m.onnx", "--data", "d.npz", "--method", "deepfault", "--neurons", path,
                "--out", "run"), message)
    assert snapshot(work) == before


def test_report_refuses_an_npz_that_claims_more_than_it_holds(cli, work):
    assert cli("synthesize", "m.onnx", "--data", "d.npz", "--method", "fgsm", "--samples", "1", "--out", "run",
               "-q").exit_code == 0
    inflate(work / "run" / "inputs.npz", 3_200_000_000)
    refused(cli("report", "run", "-o", "page.html"), "claims 3,200,000,000 bytes")
    assert not (work / "page.html").exists()
    limited = run_limited(["report", "run", "-o", "page.html"], work)  # the same under a 1.5 GiB address space
    assert limited.returncode == 1 and "Traceback" not in limited.stderr
    lines = limited.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "claims 3,200,000,000 bytes" in lines[0]
    assert not (work / "page.html").exists()
    with pytest.raises(onnxfault.OnnxFaultError, match="claims 3,200,000,000 bytes"):
        onnxfault.load(work / "run")


def test_report_refuses_a_fifo_run_file(cli, work):
    (work / "run").mkdir()
    os.mkfifo(work / "run" / "report.json")
    refused(cli("report", "run", "-o", "page.html"), "report.json is a FIFO (named pipe), not a regular file")


# ---- item 6: a swap readers cannot observe half done ----------------------------------------------------------
def test_a_run_folder_is_swapped_in_one_step(tmp_path):
    import sys
    import threading

    from onnxfault import files

    if not sys.platform.startswith("linux"):
        pytest.skip("the atomic exchange is Linux's renameat2; elsewhere the swap takes two renames")
    out = tmp_path / "run"
    out.mkdir()
    (out / "id").write_text("0")
    seen, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append((out / "id").read_text())
            except OSError:  # the folder (or its file) missing: what two renames let a reader see
                seen.append(None)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 31):
            files.write_folder(out, lambda staging, i=i: (staging / "id").write_text(str(i)))
    finally:
        stop.set()
        thread.join()
    assert None not in seen and (out / "id").read_text() == "30"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging or old folder left

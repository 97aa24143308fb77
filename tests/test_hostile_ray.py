"""Issue 23, item 7: Ray's edge cases are one line each. A listener that accepts and never answers (or answers
something else than gRPC) is refused within the 5 s the README promises; ``ray://`` without the Ray Client names
the install; a full Ray temp folder is refused before Ray spends 35 s timing out; Ctrl-C on ``--ray local``
(SIGINT to the whole process group, as a terminal sends it) exits 130 with one line and leaves no Ray process."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
MODEL, DATA = ROOT / "examples" / "mnist_lenet.onnx", ROOT / "examples" / "mnist_sample.npz"
RAY_PROCESS = ("ray::", "raylet", "gcs_server", "dashboard/agent.py", "runtime_env/agent", "log_monitor.py")


def cli(*args, env=None, **popen) -> list[str]:
    return [sys.executable, "-m", "onnxfault.cli", *map(str, args)]


def one_line(done: subprocess.CompletedProcess, start: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    return lines[0]


def listener(answer: bytes | None):
    """A TCP port that accepts connections and then stays silent (``answer`` None) or sends ``answer``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            if answer is not None:
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
@pytest.mark.parametrize("answer, said", [
    (None, "(it accepts connections but did not answer in 5 s)"),
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "(what listens there does not answer as Ray's gRPC server does)"),
])
def test_a_listener_that_is_not_ray_is_one_line_within_5_s(tmp_path, scheme, answer, said):
    server, port = listener(answer)
    try:
        start = time.monotonic()
        done = subprocess.run(cli("evaluate", MODEL, "--data", DATA, "--ray", f"{scheme}127.0.0.1:{port}", "-q"),
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        took = time.monotonic() - start
    finally:
        server.close()
    assert done.returncode == 1
    line = one_line(done, f"error: cannot reach a Ray cluster at {scheme}127.0.0.1:{port} ")
    assert said in line and "ray start --head" in line
    assert took < 5 + 10  # the probe's 5 s and the CLI's start; Ray alone retried for over 60 s
    assert not list(tmp_path.iterdir())


def test_ray_client_without_grpc_names_the_install(tmp_path):
    code = "import sys; sys.modules['grpc'] = None\nsys.argv = ['onnxfault', *sys.argv[1:]]\n" \
           "from onnxfault.cli import main\nmain()"
    done = subprocess.run([sys.executable, "-c", code, "evaluate", str(MODEL), "--data", str(DATA), "--ray",
                           "ray://127.0.0.1:10001", "-q"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    line = one_line(done, "error: --ray ray://127.0.0.1:10001 connects through the Ray Client, which needs grpcio")
    assert "pip install 'onnxfault[ray]'" in line


def test_the_ray_extra_brings_the_ray_client():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("ray[client]") for req in extras["ray"])


@pytest.fixture
def full_folder(tmp_path):
    """A 1 MiB tmpfs, filled (needs the right to mount; skipped where there is none)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("needs the right to mount a 1 MiB tmpfs to make a full temp folder")
    try:
        with open(folder / "fill", "wb") as fh:
            try:
                fh.write(bytes(2 * 2**20))
            except OSError:
                pass
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_full_ray_temp_folder_is_one_line_before_ray_times_out(tmp_path, full_folder):
    start = time.monotonic()
    done = subprocess.run(cli("evaluate", MODEL, "--data", DATA, "--ray", "local", "-q"), capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "RAY_TMPDIR": str(full_folder)})
    assert done.returncode == 1
    line = one_line(done, f"error: --ray local needs 256 MiB free in its temp folder {full_folder}, which has 0.")
    assert "RAY_TMPDIR" in line and time.monotonic() - start < 20  # Ray alone: 35 s, then "timed out"


def processes() -> dict[int, tuple[int, str, str]]:
    """Every live process: pid → (parent pid, state, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry.name)] = (int(fields[1]), fields[0], command)
    return found


def ray_descendants(root: int) -> set[int]:
    """The live Ray processes started (directly or not) by the process ``root``."""
    table = processes()
    family, grew = {root}, True
    while grew:
        more = {pid for pid, (parent, _, _) in table.items() if parent in family} - family
        family |= more
        grew = bool(more)
    return {pid for pid in family - {root}
            if table[pid][1] != "Z" and any(mark in table[pid][2] for mark in RAY_PROCESS)}


def alive(pids: set[int]) -> set[int]:
    table = processes()
    return {pid for pid in pids if pid in table and table[pid][1] != "Z"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig, group", [("SIGINT", True), ("SIGINT", False), ("SIGHUP", True)])
def test_ctrl_c_on_ray_local_exits_with_one_line_and_leaves_no_ray_process(tmp_path, sig, group):
    data = np.load(DATA)
    np.savez(tmp_path / "tiled.npz", x=np.tile(data["x"], (10, 1, 1)), y=np.tile(data["y"], 10))
    proc = subprocess.Popen(cli("localize", MODEL, "--data", "tiled.npz", "--ray", "local", "--workers", "2", "--json",
                                "r.json", "-q"), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline, started = time.monotonic() + 90, set()
    while proc.poll() is None and time.monotonic() < deadline:  # signal once the workers run
        started = ray_descendants(proc.pid)
        if any("ShardWorker" in command for _, _, command in (processes().get(pid, (0, "", "")) for pid in started)):
            break
        time.sleep(0.05)
    assert proc.poll() is None and started, proc.communicate()
    sent = time.monotonic()
    (os.killpg if group else os.kill)(proc.pid, getattr(signal, sig))
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + getattr(signal, sig)  # never 139 (a crash in teardown)
    assert stderr.strip().splitlines() == [f"error: interrupted by {sig}; no output was half-written"], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiled.npz"]
    time.sleep(3)  # Ray's agents notice their raylet is gone within a second or two
    assert alive(started) == set()


def test_a_tls_cluster_is_only_probed_for_a_listener(monkeypatch):
    """With RAY_USE_TLS the server waits for a TLS handshake, so the plain HTTP/2 probe would refuse a good cluster:
    then only the connection is checked."""
    from onnxfault.distributed.options import _probe
    from onnxfault.errors import OnnxFaultError

    server, port = listener(b"\x15\x03\x03\x00\x02\x02\x46")  # what a TLS server says to a plain client
    try:
        with pytest.raises(OnnxFaultError, match="does not answer as Ray's gRPC server does"):
            _probe(f"127.0.0.1:{port}")
        monkeypatch.setenv("RAY_USE_TLS", "1")
        _probe(f"127.0.0.1:{port}")
    finally:
        server.close()

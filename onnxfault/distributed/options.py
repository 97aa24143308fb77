"""Where the workers run (``--ray ADDRESS``, ``--workers N``) and connecting to that Ray runtime."""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import OnnxFaultError
from ..interrupts import reclaim_signals, shielding_children

CONNECT_TIMEOUT_S = 5.0  # how long an unreachable or silent address may keep the user waiting
GCS_PORT = 6379  # Ray's default head port, for an address given without one
MIN_TEMP_FREE = 256 * 2**20  # what a local Ray runtime needs in its temp folder (session logs, sockets, spill)
# An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS and its client server)
# answers with a SETTINGS frame of its own.
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4
_FIX = ("start one with `ray start --head` and pass its address (auto on a cluster node, HOST:6379, or "
        "ray://HOST:10001), or use `ray` local")


@dataclass(frozen=True)
class RayOptions:
    """Run on Ray: ``address`` ``local`` starts a Ray runtime on this machine (loopback only, shut down at the
    end); ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT`` joins a running cluster. ``workers``: actors to start
    (default: one per CPU of the cluster, or per GPU when it has GPUs and the device is not cpu)."""

    address: str = "local"
    workers: int | None = None

    def __post_init__(self):
        if not isinstance(self.address, str) or not self.address.strip():
            raise OnnxFaultError("`ray` needs an address: local, auto, HOST:PORT or ray://HOST:PORT")
        if self.workers is not None and self.workers < 1:
            raise OnnxFaultError(f"`workers` must be at least 1 (got {self.workers})")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise OnnxFaultError("`ray` needs Ray; install it with `pip install 'onnxfault[ray]'`") from None
    return ray


def _probe(address: str) -> None:
    """Fail fast (within ``CONNECT_TIMEOUT_S``) when nothing listens at ``HOST:PORT`` or ``ray://HOST:PORT``, or
    what listens does not answer as a gRPC server would: Ray itself retries such an address for minutes."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or GCS_PORT
    except ValueError:
        raise OnnxFaultError(f"`ray` {address} is not an address; {_FIX}") from None
    if not host:
        raise OnnxFaultError(f"`ray` {address} is not an address; {_FIX}")
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as connection:
            connection.settimeout(max(deadline - time.monotonic(), 0.1))
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS server waits for our handshake: that it accepts is all a plain probe can tell
            connection.sendall(_HTTP2_PREFACE)
            header = connection.recv(9)
    except socket.timeout:
        raise OnnxFaultError(f"cannot reach a Ray cluster at {address} (it accepts connections but did not answer "
                             f"in {CONNECT_TIMEOUT_S:g} s); {_FIX}") from None
    except OSError as err:
        reason = err.strerror or type(err).__name__.replace("Error", " error").strip()
        raise OnnxFaultError(f"cannot reach a Ray cluster at {address} ({reason}); {_FIX}") from None
    if len(header) < 4 or header[3] != _SETTINGS:
        raise OnnxFaultError(f"cannot reach a Ray cluster at {address} (what listens there does not answer as "
                             f"Ray's gRPC server does); {_FIX}")


def _check_client(address: str) -> None:
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise OnnxFaultError(f"`ray` {address} connects through the Ray Client, which needs grpcio; install it with "
                             "`pip install 'onnxfault[ray]'` (it brings ray[client])")


def ray_temp_folder() -> str:
    """Where a local Ray runtime keeps its session (``RAY_TMPDIR``, else the system temp folder)."""
    return os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()


def _check_temp_folder() -> None:
    """A local Ray runtime without room for its session times out after 35 s saying only that the node did not
    start: check the room first."""
    folder = ray_temp_folder()
    try:
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise OnnxFaultError(f"`ray` local cannot use the temp folder {folder} ({err.strerror or err}); point "
                             "RAY_TMPDIR at a writable folder") from None
    if free < MIN_TEMP_FREE:
        raise OnnxFaultError(f"`ray` local needs {MIN_TEMP_FREE // 2**20} MiB free in its temp folder {folder}, "
                             f"which has {free / 2**20:.1f} MiB; free some space or point RAY_TMPDIR at a folder "
                             "with room")


@contextmanager
def ray_runtime(options: RayOptions):
    """Ray connected for the duration: started (``local``) or joined, and shut down or left at the end. A
    runtime this process has already initialised is used as it is and left running."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=True, logging_level=logging.ERROR)
    if options.address == "local":
        _check_temp_folder()
        cpus = max(os.cpu_count() or 1, options.workers or 1)  # --workers above the cores still get a slot each
        try:
            with shielding_children():  # a terminal's Ctrl-C reaches this process, which stops Ray in order
                ray.init(address="local", num_cpus=cpus, _node_ip_address="127.0.0.1", **quiet)
        except Exception as err:  # noqa: BLE001 - Ray raises bare Exception when its node does not start
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise OnnxFaultError(f"cannot start a local Ray runtime ({first}); check the free space and the "
                                 f"permissions of its temp folder {ray_temp_folder()} (RAY_TMPDIR)") from None
    else:
        _check_client(options.address)
        _probe(options.address)
        try:
            ray.init(address=options.address, **({} if options.address.startswith("ray://") else quiet))
        except (ConnectionError, TimeoutError, RuntimeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise OnnxFaultError(f"cannot reach a Ray cluster at {options.address} ({first}); {_FIX}") from None
    reclaim_signals()  # Ray's core worker puts its own SIGTERM handler (a stack dump) in place of ours
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_count(ray, options: RayOptions, gpus: bool) -> int:
    """``options.workers``, or one per CPU (GPU) of the cluster; more than the cluster can place is an error."""
    resources = ray.cluster_resources()
    slots = int(resources.get("GPU" if gpus else "CPU", 0))
    wanted = options.workers or max(slots, 1)
    if wanted > slots:
        raise OnnxFaultError(f"`workers` {wanted} but the Ray cluster has {slots} {'GPU' if gpus else 'CPU'}s; "
                             f"give `workers` {max(slots, 1)} or fewer, or add nodes")
    return wanted


def use_gpus(ray, device: str) -> bool:
    """One GPU per actor when the cluster has GPUs and the run is not pinned to the CPU."""
    return device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1


def holds_ray(function):
    """Run ``function`` (which takes ``ray=``) inside one Ray runtime when ``ray`` is given, so that the passes
    it makes on Ray (spectrum, synthesis) share one runtime instead of starting one each."""

    @functools.wraps(function)
    def wrapper(*args, ray: RayOptions | None = None, **kwargs):
        if ray is None:
            return function(*args, **kwargs)
        with ray_runtime(ray):
            return function(*args, ray=ray, **kwargs)

    return wrapper

"""Where the workers run (``--ray ADDRESS``, ``--workers N``) and connecting to that Ray runtime."""
from __future__ import annotations

import functools
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import OnnxFaultError

CONNECT_TIMEOUT_S = 5.0  # how long an unreachable address may keep the user waiting
GCS_PORT = 6379  # Ray's default head port, for an address given without one
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
    """Fail fast (within ``CONNECT_TIMEOUT_S``) when nothing listens at ``HOST:PORT`` or ``ray://HOST:PORT``:
    Ray itself retries an unreachable head for minutes."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname, parts.port or GCS_PORT
    except ValueError:
        raise OnnxFaultError(f"`ray` {address} is not an address; {_FIX}") from None
    if not host:
        raise OnnxFaultError(f"`ray` {address} is not an address; {_FIX}")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__.replace("Error", " error").strip()
        raise OnnxFaultError(f"cannot reach a Ray cluster at {address} ({reason}); {_FIX}") from None


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
        cpus = max(os.cpu_count() or 1, options.workers or 1)  # --workers above the cores still get a slot each
        ray.init(address="local", num_cpus=cpus, _node_ip_address="127.0.0.1", **quiet)
    else:
        _probe(options.address)
        try:
            ray.init(address=options.address, **({} if options.address.startswith("ray://") else quiet))
        except (ConnectionError, TimeoutError, RuntimeError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise OnnxFaultError(f"cannot reach a Ray cluster at {options.address} ({first}); {_FIX}") from None
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

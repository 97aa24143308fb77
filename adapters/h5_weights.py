"""Keras ``.h5`` weights read under the rules ONNX external data and data files follow.

HDF5 can point outside the file it is opened from: an ExternalLink names another file, a dataset's
external storage names raw files, a virtual dataset maps other files in. Left to HDF5, these resolve
against the working directory or any path, so a weights file could read ``/etc/passwd`` into an ONNX
initializer or block on a FIFO. Here every link is followed by hand, and every file it names must be a
regular file inside the folder of the ``.h5`` it was opened from. A dataset's declared size is checked
against the bytes it stores before anything is allocated, so an 8 KiB file cannot declare 4 GB of weights.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from onnxfault.errors import OnnxFaultError, file_kind, regular_file

MAX_LINK_HOPS = 16  # HDF5's own limit on nested soft links
MAX_COMPRESSION = 1100  # deflate, the strongest filter HDF5 ships, expands data at most 1032:1


class H5Weights:
    """One ``.h5`` opened for reading weights; :meth:`lookup` and :meth:`read` keep to its folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.folder = self.path.resolve().parent
        self._open_files: dict[Path, object] = {}
        self.root = self._open(self.path.resolve(), f"{self.path}")

    def __enter__(self) -> "H5Weights":
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._open_files.values():
            handle.close()
        self._open_files.clear()

    # ---- links ------------------------------------------------------------------------------------
    def lookup(self, group, path: str, hops: int = 0):
        """The object at ``path`` (absolute, or relative to ``group``), or None; links followed by hand."""
        import h5py

        current = group.file["/"] if path.startswith("/") else group
        for name in [part for part in path.split("/") if part not in ("", ".")]:
            if not isinstance(current, h5py.Group):
                return None
            link = current.get(name, getlink=True)
            if link is None:
                return None
            if isinstance(link, h5py.HardLink):
                current = current[name]
                continue
            if hops >= MAX_LINK_HOPS:
                raise OnnxFaultError(f"{self.path} links more than {MAX_LINK_HOPS} times in a row at "
                                     f"'{current.name.rstrip('/')}/{name}'; "
                                     "pass the .h5 saved from the model")
            if isinstance(link, h5py.SoftLink):
                current = self.lookup(current, link.path, hops + 1)
            elif isinstance(link, h5py.ExternalLink):
                where = f"the external link '{current.name.rstrip('/')}/{name}' in {self.path}"
                target = self._open(self._inside(link.filename, where), where)
                current = self.lookup(target["/"], link.path, hops + 1)
            else:
                return None
            if current is None:
                return None
        return current

    # ---- data -------------------------------------------------------------------------------------
    def read(self, dataset, where: str) -> np.ndarray:
        """The numbers in ``dataset`` as float32, after its declared size is checked against its storage."""
        import h5py

        if not isinstance(dataset, h5py.Dataset):
            raise OnnxFaultError(f"{where} is not an HDF5 dataset; pass the .h5 saved from the model")
        if dataset.is_virtual:
            raise OnnxFaultError(f"{where} is a virtual dataset mapping other files in; Keras never writes one, "
                                 "pass the .h5 saved from the model")
        if dataset.dtype.kind not in "fiub" or dataset.dtype.itemsize > 8:
            raise OnnxFaultError(f"{where} holds {dataset.dtype} values, not numbers; pass the .h5 saved from the model")
        declared = int(dataset.size) * dataset.dtype.itemsize
        if dataset.external:
            raw = self._external(dataset, declared, where)
            return np.frombuffer(raw, dtype=dataset.dtype).reshape(dataset.shape).astype(np.float32)
        self._check_stored(dataset, declared, where)
        return np.asarray(dataset[()], dtype=np.float32)

    def _check_stored(self, dataset, declared: int, where: str) -> None:
        stored = int(dataset.id.get_storage_size())
        filtered = dataset.id.get_create_plist().get_nfilters() > 0
        limit = stored * MAX_COMPRESSION if filtered else stored
        if declared > limit:
            raise OnnxFaultError(f"{where} declares {declared:,} bytes of weights but stores {stored:,}; "
                                 "the file is not a saved Keras model, pass the .h5 saved from the model")
        size = os.stat(dataset.file.filename).st_size
        offset = dataset.id.get_offset()
        if stored > size or (offset is not None and offset + stored > size):
            raise OnnxFaultError(f"{where} declares {stored:,} stored bytes past the end of its {size:,}-byte file; "
                                 "the file is cut short, pass the whole .h5")

    def _external(self, dataset, declared: int, where: str) -> bytes:
        """A dataset's external storage, read by hand from regular files inside the folder."""
        parts, got = [], 0
        for name, offset, size in dataset.external:
            if got >= declared:
                break
            path = self._inside(name, f"the external storage of {where}")
            take = min(int(size), declared - got)
            parts.append(_read_range(path, int(offset), take, f"the external storage of {where}"))
            got += take
        if got < declared:
            raise OnnxFaultError(f"{where} declares {declared:,} bytes but its external storage holds {got:,}; "
                                 "pass the .h5 saved from the model")
        return b"".join(parts)

    # ---- files ------------------------------------------------------------------------------------
    def _inside(self, name, where: str) -> Path:
        """``name`` (as HDF5 stores it) resolved against the folder; refused unless it stays inside."""
        text = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        path = (self.folder / text).resolve()
        if not path.is_relative_to(self.folder):
            raise OnnxFaultError(f"{where} names {text}, outside the model's folder {self.folder}; "
                                 "keep every file a model reads beside it")
        return path

    def _open(self, path: Path, where: str):
        import h5py

        if path in self._open_files:
            return self._open_files[path]
        regular_file(path, "give the file itself", where=f"{where}: ")
        try:
            handle = h5py.File(path, "r")
        except OSError as err:
            raise OnnxFaultError(f"cannot read {path} as HDF5 ({str(err).splitlines()[0]}); the file is corrupt "
                                 "or not a Keras .h5") from None
        self._open_files[path] = handle
        return handle


def _read_range(path: Path, offset: int, size: int, where: str) -> bytes:
    """``size`` bytes at ``offset`` of a regular file; opened without blocking, so a FIFO cannot hang."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise OnnxFaultError(f"{where}: cannot read {path}: {err.strerror or err}; check the path") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OnnxFaultError(f"{where}: {path} is {file_kind(info.st_mode)}, not a regular file; "
                                 "give the file itself")
        if offset < 0 or offset + size > info.st_size:
            raise OnnxFaultError(f"{where} declares {size:,} bytes at offset {offset:,} of {path}, which holds "
                                 f"{info.st_size:,}; pass the .h5 saved from the model")
        chunks, done = [], 0
        while done < size:
            chunk = os.pread(fd, size - done, offset + done)
            if not chunk:
                raise OnnxFaultError(f"{path} ended while {where} was read; pass the .h5 saved from the model")
            chunks.append(chunk)
            done += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)

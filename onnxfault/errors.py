"""The one exception type users see: a single line naming the cause and the fix."""


class OnnxFaultError(Exception):
    """A problem with the user's input (model, data, arguments or paths).

    ``parameter`` names the argument it is about, when it is about one (the Python name: ``k``, ``cls``). A message
    writes argument names in backticks (`` `k` ``); the CLI prints it as one line with each such name spelled as
    its flag (``-k``), and exits non-zero, without a traceback.
    """

    def __init__(self, message: str = "", parameter: str | None = None):
        # a name read from the user's files ("a\nb") must not break the one line: line breaks are spelled out
        super().__init__(str(message).replace("\r", "\\r").replace("\n", "\\n"))
        self.parameter = parameter


class OnnxFaultWarning(UserWarning):
    """Something the user should know about a result (it also lands in the result's ``warnings``)."""


def warn(messages) -> None:
    """Each message through :func:`warnings.warn` as an :class:`OnnxFaultWarning` (attributed to the caller of the
    public function, two frames up)."""
    import warnings

    for message in messages:
        warnings.warn(str(message), OnnxFaultWarning, stacklevel=3)


_KINDS = {int: "a whole number", float: "a finite number", str: "a string", bool: "True or False"}


def check_arguments(**arguments) -> None:
    """Types and ranges of a public function's arguments, one :class:`OnnxFaultError` naming the first wrong one.
    Each value is ``(value, kind)`` or ``(value, kind, minimum)``: ``kind`` int (a bool is not one), float (an
    int is one; it must be finite), str or bool, or a tuple of those; None passes when the kind tuple holds None."""
    import math

    for name, (value, kind, *rest) in arguments.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if value is None and None in kinds:
            continue
        ok = False
        for k in (k for k in kinds if k is not None):
            if k is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif k is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            else:
                ok = isinstance(value, k)
            if ok:
                break
        wanted = " or ".join([_KINDS.get(k, getattr(k, "__name__", str(k))) for k in kinds if k is not None]
                             + (["None"] if None in kinds else []))
        if not ok:
            raise OnnxFaultError(f"`{name}` must be {wanted} (got {value!r})", parameter=name)
        if rest and rest[0] is not None and value < rest[0]:
            raise OnnxFaultError(f"`{name}` must be at least {rest[0]} (got {value!r})", parameter=name)


def close_matches_hint(name: str, choices: list[str], what: str) -> str:
    """``unknown <what> 'name'; did you mean a, b?`` (or the available names when none is close)."""
    import difflib

    matches = difflib.get_close_matches(name, choices, n=5, cutoff=0.4)
    if matches:
        return f"unknown {what} '{name}'; did you mean {', '.join(matches)}?"
    shown = ", ".join(choices[:8]) + (", …" if len(choices) > 8 else "")
    return f"unknown {what} '{name}'; available: {shown or 'none'}"


def check_finite(**values) -> None:
    """Every given number must be finite: ``check_finite(threshold=t)`` fails on NaN or ±inf, naming the
    parameter (``threshold``; the CLI spells it ``--threshold``). None and non-numbers are skipped."""
    import math

    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            raise OnnxFaultError(f"`{name}` must be a finite number (got {value}); give a number such as 0.5",
                                 parameter=name)


MAX_JSON_BYTES = 1 << 30  # no result onnxfault writes comes near this


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (for error messages)."""
    import stat

    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a folder" if stat.S_ISDIR(mode) else "not a regular file"


def regular_file(path, fix: str, *, what: str = "a regular file", where: str = "", verb: str = "read"):
    """``os.stat(path)`` when ``path`` is a regular file, checked before it is opened (a FIFO would block, a
    device never end); otherwise one error: ``{where}cannot {verb} PATH: why; {fix}`` or ``{where}PATH is a FIFO
    (named pipe), not {what}; {fix}``."""
    import os
    import stat

    try:
        info = os.stat(path)
    except OSError as err:
        raise OnnxFaultError(f"{where}cannot {verb} {path}: {err.strerror or err}; {fix}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OnnxFaultError(f"{where}{path} is {file_kind(info.st_mode)}, not {what}; {fix}")
    return info


def read_json(path, hint: str):
    """The JSON value in the file ``path``; any failure to read or parse it (also nesting too deep for
    Python) is one OnnxFaultError ending with ``hint``. Only a regular file of at most :data:`MAX_JSON_BYTES`
    is read: a FIFO would block, a device (``/dev/zero``) would never end."""
    import json
    from pathlib import Path

    info = regular_file(path, hint)
    if info.st_size > MAX_JSON_BYTES:
        raise OnnxFaultError(f"{path} holds {info.st_size:,} bytes, more than any result onnxfault writes; {hint}")
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise OnnxFaultError(f"cannot read {path}: {err.strerror or err}; {hint}") from err
    except UnicodeDecodeError as err:
        raise OnnxFaultError(f"{path} is not JSON (not UTF-8 text); {hint}") from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise OnnxFaultError(f"{path} is not JSON ({err}); {hint}") from err
    except RecursionError as err:
        raise OnnxFaultError(f"{path} is nested too deeply to be a result onnxfault wrote; {hint}") from err

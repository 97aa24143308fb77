"""The one exception type users see: a single line naming the cause and the fix."""


class OnnxFaultError(Exception):
    """A problem with the user's input (model, data, flags or paths).

    The CLI prints ``str(err)`` as one line and exits non-zero, without a traceback.
    """


def close_matches_hint(name: str, choices: list[str], what: str) -> str:
    """``unknown <what> 'name'; did you mean a, b?`` (or the available names when none is close)."""
    import difflib

    matches = difflib.get_close_matches(name, choices, n=5, cutoff=0.4)
    if matches:
        return f"unknown {what} '{name}'; did you mean {', '.join(matches)}?"
    shown = ", ".join(choices[:8]) + (", …" if len(choices) > 8 else "")
    return f"unknown {what} '{name}'; available: {shown or 'none'}"


def check_finite(**values) -> None:
    """Every given number must be finite: ``check_finite(threshold=t)`` fails on NaN or ±inf, naming
    ``--threshold`` (None and non-numbers are skipped; a trailing ``_`` is dropped, as in ``lambda_``)."""
    import math

    for name, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            flag = "--" + name.rstrip("_").replace("_", "-")
            raise OnnxFaultError(f"{flag} must be a finite number (got {value}); give a number such as 0.5")


def read_json(path, hint: str):
    """The JSON value in the file ``path``; any failure to read or parse it (also nesting too deep for
    Python) is one OnnxFaultError ending with ``hint``."""
    import json
    from pathlib import Path

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

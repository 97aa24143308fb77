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

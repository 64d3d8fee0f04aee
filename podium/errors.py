"""One error type for bad user input, printed as one line instead of a traceback.

Anything the user can fix (a config key, a data folder, an encoder name, a checkpoint) raises
`PodiumError` with a message that names the culprit and what was expected. `install_excepthook`
makes an uncaught PodiumError print `podium: error: <message>` (exit status 1) — also
under `catalyst-dl run`, where podium is imported while the config is being resolved.
"""

import difflib
import os
import sys
from typing import Iterable, Optional

__all__ = ["PodiumError", "did_you_mean", "check_keys", "check_output_folder", "install_excepthook"]


class PodiumError(Exception):
    """Bad input from the user: a config, a data folder, a checkpoint."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' if nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check_keys(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise PodiumError for the first key in `given` that is not in `allowed`."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise PodiumError(
                f'unknown key "{key}" in {where}{did_you_mean(key, allowed)}; '
                f"expected one of: {', '.join(sorted(allowed))}"
            )


def check_output_folder(path, key: str) -> None:
    """`path` is a folder, or can be made one: not a file, nor below a file, nor read-only.

    Run before anything is written, so a run directory or an output folder given by mistake
    fails at once, with nothing created."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise PodiumError(f"{key} {path} is a file; expected a folder (existing or to be created)")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise PodiumError(
            f"{key} {path} cannot be created: {existing} is a file; expected a folder path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PodiumError(f"{key} {path} cannot be written: {existing} is not writable")


def _format(exc: BaseException) -> Optional[str]:
    """The PodiumError in `exc` or its causes/contexts (Catalyst and hydra-slayer wrap them)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, PodiumError):
            message = str(exc)
            if "Original Traceback" in message:  # re-raised from a DataLoader worker
                message = message.strip().splitlines()[-1].split("PodiumError: ", 1)[-1]
            return message
        exc = exc.__cause__ or exc.__context__
    return None


def install_excepthook() -> None:
    """Print an uncaught PodiumError as one line; leave other errors untouched."""
    previous = sys.excepthook
    if getattr(previous, "_podium", False):
        return

    def hook(exc_type, exc, tb):
        message = _format(exc)
        if message is None:
            previous(exc_type, exc, tb)
            return
        sys.stderr.write(f"podium: error: {message}\n")

    hook._podium = True
    sys.excepthook = hook

"""`catalyst-dl run` / `tune`: Ctrl-C and SIGTERM end with one line and status 130 / 143.

Catalyst lets a KeyboardInterrupt out as a 50-line traceback through its runner, and SIGTERM
ends the process at once (no `finally`, no closed logs). The wrapped entry point installs
podium's handlers (`podium.interrupts`) and prints the runner's explanation instead: where the
run stopped, its last complete checkpoint and the command that continues it.
"""

import functools
import os
import sys

from podium import interrupts

__all__ = ["apply"]


def _reporting(main):
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            with interrupts.handled():
                return main(*args, **kwargs)
        except interrupts.Interrupted as stop:
            if int(os.environ.get("RANK", "0") or 0) > 0:  # torchrun: rank 0 speaks for all
                os.environ[interrupts.QUIET_ENV] = "1"
            command = " ".join(["catalyst-dl", *sys.argv[1:2]])
            sys.exit(interrupts.report(command, stop))

    wrapper._podium_interrupts = True
    return wrapper


def apply() -> None:
    import catalyst.dl.__main__ as entry

    if not getattr(entry.main, "_podium_interrupts", False):
        entry.main = _reporting(entry.main)

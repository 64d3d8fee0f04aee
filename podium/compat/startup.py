"""Interpreter startup hook: hides neptune's `neptune.new` deprecation warning, and makes
`catalyst-dl` import podium (so its compat fixes) before Catalyst reads the config files.

`import catalyst` runs `import neptune.new` (catalyst/settings.py), and neptune 1.x prints
"[neptune] [warning] ... NeptuneDeprecationWarning: You're importing the Neptune client library
via the deprecated `neptune.new` module" on every `catalyst-dl run`, before podium is imported.
A `podium_startup.pth` in site-packages runs one line at interpreter start that imports only
`os` and `warnings` (not podium, torch or neptune).

A plain `warnings.filterwarnings("ignore", ...)` installed at startup does not work: importing
neptune runs `warnings.simplefilter("always", category=NeptuneDeprecationWarning)`, which goes
to the front of the filter list. So the hook wraps `warnings.showwarning` and drops exactly that
message. `PODIUM_STARTUP_HOOK=0` disables it.

    python -m podium.compat.startup install | uninstall | status

`catalyst-dl run --config a.yml b.yml` merges the files with Catalyst's `merge_dicts`, which
needs the `collections.Mapping` fix (podium.compat.collections_abc) — but podium is otherwise
imported only later, when the config's runner `_target_` is resolved. So for a `catalyst-dl`
process the hook also imports podium first; it also installs podium's one-line error printing
before the YAML is parsed.

This module imports nothing beyond the standard library.
"""

import argparse
import os
import sysconfig

__all__ = ["MESSAGE", "HOOK", "PTH_NAME", "pth_path", "install", "uninstall", "main"]

MESSAGE = "You're importing the Neptune client library via the deprecated `neptune.new` module"
PTH_NAME = "podium_startup.pth"
HOOK = (
    'import os, warnings; os.environ.get("PODIUM_STARTUP_HOOK", "1") == "0" or setattr(warnings, '
    '"showwarning", lambda message, *args, _show=warnings.showwarning, **kwargs: None '
    f"if str(message).startswith({MESSAGE!r}) else _show(message, *args, **kwargs)); "
    'import sys; os.environ.get("PODIUM_STARTUP_HOOK", "1") == "0" or not sys.argv '
    'or os.path.basename(sys.argv[0]) != "catalyst-dl" or __import__("podium")\n'
)


def pth_path() -> str:
    """Where the hook goes: this interpreter's (venv's) purelib site-packages."""
    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def install() -> str:
    """Write the .pth (idempotent: rewrites only when its content differs)."""
    path = pth_path()
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == HOOK:
                return path
    with open(path, "w") as f:
        f.write(HOOK)
    return path


def uninstall() -> str:
    path = pth_path()
    if os.path.exists(path):
        os.remove(path)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m podium.compat.startup")
    parser.add_argument("action", choices=["install", "uninstall", "status"])
    action = parser.parse_args(argv).action
    if action == "install":
        print(f"installed {install()}")
    elif action == "uninstall":
        print(f"removed {uninstall()}")
    else:
        path = pth_path()
        print(f"{path}: {'installed' if os.path.exists(path) else 'not installed'}")


if __name__ == "__main__":
    main()

"""The parser of `podium lr-find` and `podium cv`, which take Catalyst-style overrides
(`--stages/train/loaders/batch_size=4:int`) beside their own flags, like `catalyst-dl run`."""

import argparse
import re
import sys

__all__ = ["OVERRIDE", "OverridesParser"]

# `--stages/train/loaders/batch_size=4:int`: a Catalyst override (a key path with "/")
OVERRIDE = re.compile(r"^--?[^=\s]*/[^=\s]*=[^=]*:\w+$")


class OverridesParser(argparse.ArgumentParser):
    """An ArgumentParser that sets Catalyst-style overrides aside (in `args.overrides`)."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        overrides = [arg for arg in args if OVERRIDE.match(arg)]
        rest = [arg for arg in args if not OVERRIDE.match(arg)]
        namespace, extras = super().parse_known_args(rest, namespace)
        namespace.overrides = list(getattr(namespace, "overrides", None) or []) + overrides
        return namespace, extras

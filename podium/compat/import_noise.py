"""Hide the FutureWarnings pytorch-toolbelt 0.8.0 triggers at import time.

Importing toolbelt (every podium model does) prints four warnings about toolbelt's own code —
`torch.jit.script` and `torch.cuda.amp.autocast` deprecations, and its `timm.models.layers` /
`timm.models.factory` imports — on every `catalyst-dl run`. Users cannot act on them. The
filters match those exact messages only, so the same deprecations in user code still show.
"""

import warnings

__all__ = ["MESSAGES", "around"]

MESSAGES = (
    r"`torch\.jit\.script` is deprecated",
    r"Importing from timm\.models\.layers is deprecated",
    r"Importing from timm\.models\.factory is deprecated",
    r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
)


def around(load) -> None:
    """Run `load` (the import of pytorch_toolbelt, see `import_hooks`) and import the toolbelt
    modules that warn, with the filters in place."""
    with warnings.catch_warnings():
        for message in MESSAGES:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        load()
        import pytorch_toolbelt.losses  # noqa: F401
        import pytorch_toolbelt.modules  # noqa: F401
        import timm.models.factory  # noqa: F401  (toolbelt imports it inside GenericTimmEncoder)

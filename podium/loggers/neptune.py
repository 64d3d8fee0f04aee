"""NeptuneLogger: a Catalyst logger for the neptune 1.x client (`neptune.init_run`).

Catalyst 21.12's own NeptuneLogger calls `neptune.init`, removed in neptune 1.0, and cannot
be pickled into spawn-DDP workers. This one (see `TrackingLogger` for what all podium
loggers share) adds:

- modes `async` (a self-hosted neptune server; the default, or `$NEPTUNE_MODE`), `sync`,
  `offline` (everything goes to `<logdir>/.neptune/`; upload later with
  `neptune sync --path <logdir> --project WORKSPACE/PROJECT`) and `debug` (in memory).
- the project and API token come only from `$NEPTUNE_PROJECT` / `$NEPTUNE_API_TOKEN`, which
  the neptune client reads itself: podium never holds them, so they cannot end up in a log
  or a saved config. `api_token:` / `project:` in the YAML are refused.
- an unreachable server does not cost the training: the server named in the token is probed
  (`connect_timeout` s) before `init_run` — which would otherwise retry for about a minute —
  and when it does not answer, or `init_run` fails, the run is logged offline instead, with
  one warning naming the server and the `neptune sync` command. At the end, `stop()` waits
  at most `stop_timeout` s for the upload queue (what is left stays in `.neptune/`).

Fields of the run: `parameters/...` (the resolved config), `config` (config.yml),
`metrics/<loader>/<key>` (epoch values, step = global epoch; `/` in a key becomes `.`, so
`dice` and `dice/_macro` do not collide), `batch/<loader>/<key>` (optional),
`images/overlays/<stage>` (overlays, named `epoch_<k>/<file>`), `progress`,
`checkpoints/best` (optional), `fold`, `podium/logdir`, `sys/tags` (with `fold-<k>`).
"""

import base64
import contextlib
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Union

import numpy as np

from podium.errors import PodiumError, did_you_mean
from podium.loggers._base import TrackingLogger, summary, unreachable, warn

__all__ = ["NeptuneLogger", "MODES", "server_address", "field_name"]

MODES = ("async", "sync", "offline", "debug")
_ONLINE = ("async", "sync")
# set by NeptuneLogger itself; not accepted in run_kwargs
_OWN_KEYS = ("with_id", "project", "api_token", "custom_run_id", "mode", "name", "tags")


def server_address(token: Optional[str]) -> Optional[str]:
    """The server URL inside a neptune API token (base64 JSON with `api_address`), or None."""
    if not token:
        return None
    try:
        return json.loads(base64.b64decode(token.strip().encode()).decode())["api_address"]
    except Exception:  # noqa: BLE001 - neptune reports a malformed token itself
        return None


def field_name(key: str) -> str:
    """A metric key as one neptune field name: `dice/_macro` → `dice._macro`."""
    return str(key).replace("/", ".")


def _without_empty(value: Any) -> Any:
    """neptune cannot assign an empty namespace: drop empty mappings."""
    if isinstance(value, Mapping):
        return {
            k: _without_empty(v) for k, v in value.items() if not (isinstance(v, Mapping) and not v)
        }
    return value


@contextlib.contextmanager
def _data_directory(path: Optional[str]):
    """neptune keeps its queue (async) / its whole run (offline) under $NEPTUNE_DATA_DIRECTORY,
    read when the run is created; point it into the run directory unless the user set it."""
    if path is None or "NEPTUNE_DATA_DIRECTORY" in os.environ:
        yield
        return
    os.environ["NEPTUNE_DATA_DIRECTORY"] = path
    try:
        yield
    finally:
        os.environ.pop("NEPTUNE_DATA_DIRECTORY", None)


class NeptuneLogger(TrackingLogger):
    """Logs a Catalyst run to neptune (see the module docstring).

        loggers:
          neptune:
            _target_: podium.loggers.NeptuneLogger
            mode: async              # async | sync | offline | debug
            tags: [unet, resnet18]

    Args:
        mode: neptune's connection mode (default: `$NEPTUNE_MODE`, else `async`).
        connect_timeout: seconds to wait for the server before falling back to offline.
        stop_timeout: seconds `stop()` may wait for the upload queue at the end.
        run_kwargs: more arguments of `neptune.init_run` (e.g. `capture_hardware_metrics`,
            `source_files`, `description`, `proxies`).
        logdir, use_logdir_postfix, name, tags, fold, log_batch_metrics, log_epoch_metrics,
            log_images, log_checkpoint: see `podium.loggers.TrackingLogger`.

    The API token and the project are not arguments: `$NEPTUNE_API_TOKEN` / `$NEPTUNE_PROJECT`.
    """

    _connection_attributes = ("_run",)
    refused_keys = {
        "project": "neptune reads the NEPTUNE_PROJECT environment variable "
        "(export NEPTUNE_PROJECT=workspace/project)",
        "api_token": "set the NEPTUNE_API_TOKEN environment variable instead",
    }

    def __init__(
        self,
        mode: Optional[str] = None,
        logdir: Optional[str] = None,
        use_logdir_postfix: bool = False,
        name: Optional[str] = None,
        tags: Optional[Iterable[str]] = None,
        fold: Optional[int] = None,
        log_batch_metrics: bool = False,
        log_epoch_metrics: bool = True,
        log_images: bool = True,
        log_checkpoint: Union[bool, str] = False,
        connect_timeout: float = 5.0,
        stop_timeout: float = 60.0,
        run_kwargs: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(
            logdir=logdir,
            use_logdir_postfix=use_logdir_postfix,
            name=name,
            tags=tags,
            fold=fold,
            log_batch_metrics=log_batch_metrics,
            log_epoch_metrics=log_epoch_metrics,
            log_images=log_images,
            log_checkpoint=log_checkpoint,
        )
        where = self._where_in_config()
        mode = mode or os.environ.get("NEPTUNE_MODE") or "async"
        if mode not in MODES:
            raise PodiumError(
                f"{where}: mode {mode!r} is not one of {', '.join(MODES)}"
                f"{did_you_mean(mode, MODES)}"
            )
        if mode in _ONLINE:
            missing = [v for v in ("NEPTUNE_PROJECT", "NEPTUNE_API_TOKEN") if not os.environ.get(v)]
            if missing:
                raise PodiumError(
                    f"{where}: mode {mode} needs {' and '.join(missing)} in the environment "
                    "(the server's API token and WORKSPACE/PROJECT); without a server use "
                    "mode: offline and `neptune sync` later"
                )
        self.mode = mode
        self.connect_timeout = float(connect_timeout)
        self.stop_timeout = float(stop_timeout)
        self.run_kwargs = dict(run_kwargs or {})
        self._check_run_kwargs(where)
        # one id for every process and stage of this run: a spawn-DDP worker that opens the
        # run again (async/sync) continues the same run instead of creating a new one
        self.custom_run_id = os.environ.get("NEPTUNE_CUSTOM_RUN_ID") or os.urandom(16).hex()
        self.mode_used: Optional[str] = None  # the mode the run was opened in (after fallback)
        self._run = None

    def _check_run_kwargs(self, where: str) -> None:
        import neptune

        accepted = [
            name
            for name, parameter in inspect.signature(neptune.init_run).parameters.items()
            if parameter.kind is not inspect.Parameter.VAR_KEYWORD and name not in _OWN_KEYS
        ]
        for key in self.run_kwargs:
            if key in _OWN_KEYS:
                raise PodiumError(f"{where}: run_kwargs/{key} is set by podium; remove it")
            if key not in accepted:
                raise PodiumError(
                    f'{where}: unknown key "{key}" in run_kwargs{did_you_mean(key, accepted)}; '
                    f"neptune.init_run accepts: {', '.join(accepted)}"
                )

    # -- where the data goes --------------------------------------------------------------
    @property
    def data_directory(self) -> Optional[str]:
        """`.neptune/` of this run: $NEPTUNE_DATA_DIRECTORY, else inside the logdir."""
        if os.environ.get("NEPTUNE_DATA_DIRECTORY"):
            return os.environ["NEPTUNE_DATA_DIRECTORY"]
        return os.path.join(self.logdir, ".neptune") if self.logdir else None

    @property
    def url(self) -> Optional[str]:
        return server_address(os.environ.get("NEPTUNE_API_TOKEN"))

    def _sync_hint(self) -> str:
        where = os.path.dirname(self.data_directory) if self.data_directory else "."
        project = os.environ.get("NEPTUNE_PROJECT") or "WORKSPACE/PROJECT"
        return f"neptune sync --path {where or '.'} --project {project}"

    def _server(self) -> str:
        if self.mode_used in _ONLINE:
            return f"neptune server {self.url}"
        return f"neptune ({self.mode_used or self.mode} mode)"

    @classmethod
    def _errors(cls) -> tuple:
        from neptune.exceptions import NeptuneException

        return (OSError, NeptuneException)

    # -- TrackingLogger -------------------------------------------------------------------
    def _open(self) -> None:
        import neptune

        mode = self.mode
        if mode in _ONLINE:
            url = self.url
            problem = unreachable(url, self.connect_timeout) if url else None
            if problem is not None:
                mode = self._fall_back(f"neptune server {url} is unreachable ({problem})")
        tags = self.tags
        if isinstance(tags, Mapping):
            tags = [f"{k}:{v}" for k, v in tags.items()]
        tags = [str(tag) for tag in (tags or [])]
        fold = self.fold_value
        if fold is not None:
            tags.append(f"fold-{fold}")
        kwargs = dict(
            custom_run_id=self.custom_run_id,
            name=self.run_name,
            tags=tags or None,
            **self.run_kwargs,
        )
        with _data_directory(self.data_directory):
            try:
                self._run = neptune.init_run(mode=mode, **kwargs)
            except self._errors() as error:
                if mode not in _ONLINE:
                    raise
                mode = self._fall_back(f"neptune server {self.url} failed ({summary(error)})")
                self._run = neptune.init_run(mode=mode, **kwargs)
        self.mode_used = mode
        if fold is not None:
            self._run["fold"] = fold
        if self.logdir:
            self._run["podium/logdir"] = str(Path(self.logdir).resolve())

    def _fall_back(self, reason: str) -> str:
        warn(
            f"{reason}; logging offline into {self.data_directory or '.neptune'} instead — "
            f"upload it later with: {self._sync_hint()}"
        )
        return "offline"

    def _log_config(self, config: Dict[str, Any], text: str) -> None:
        from neptune.types import File
        from neptune.utils import stringify_unsupported

        self._run["parameters"] = stringify_unsupported(_without_empty(config))
        self._run["config"].upload(File.from_content(text, extension="yml"))

    def _log_scalars(self, kind: str, loader: str, metrics: Dict[str, float], step: int) -> None:
        namespace = "metrics" if kind == "epoch" else "batch"
        for key, value in metrics.items():
            self._run[f"{namespace}/{loader}/{field_name(key)}"].append(value, step=step)

    def _log_file(self, path: Path, name: str) -> None:
        from neptune.types import File

        parts = name.split("/")
        if parts[0] == "overlays" and len(parts) >= 3:
            # one image series per stage; each entry named epoch_<k>/<file>
            entry = "/".join(parts[2:]).rsplit(".", 1)[0]
            self._run[f"images/overlays/{parts[1]}"].append(File(str(path)), name=entry)
            return
        parts[-1] = parts[-1].rsplit(".", 1)[0] if "." in parts[-1] else parts[-1]
        self._run["/".join(parts)].upload(str(path))

    def _log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        from neptune.types import File

        self._run[f"images/{tag}"].append(File.as_image(image), name=f"epoch_{step}")

    def _close(self, failed: bool, end_of_run: bool) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        started = time.monotonic()
        run.stop(seconds=self.stop_timeout)
        if self.mode_used in _ONLINE and time.monotonic() - started >= self.stop_timeout:
            warn(
                f"neptune server {self.url} did not take everything within {self.stop_timeout:g} s;"
                f" the rest is kept in {self.data_directory or '.neptune'} — upload it with: "
                f"{self._sync_hint()}"
            )

    @property
    def logger(self):
        """The neptune Run (None before the first use and after the end)."""
        return self._run

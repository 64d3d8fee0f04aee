"""How a model's forward pass runs: precision, memory format, torch.compile.

One object shared by the training engines (podium.runners.engines) and the Predictor:

- precision `fp32 | bf16 | fp16 | auto`: bf16 / fp16 run the forward pass under
  `torch.autocast` of the device; its floating outputs come back as float32, so losses and
  metrics are computed in fp32. fp16 also scales the loss with `torch.amp.GradScaler` (its
  gradients would underflow otherwise); bf16 has fp32's range and needs no scaler. `auto` picks
  bf16 where the hardware computes it natively (CUDA compute capability >= 8.0, a CPU with
  AVX512-BF16 or AMX), else fp32.
- memory format `contiguous | channels_last | auto`: channels_last stores model weights and
  4-D input batches as N×H×W×C, which oneDNN and tensor cores run faster in reduced precision
  (and slower in fp32 on a CPU); `auto` turns it on exactly when the precision is bf16 / fp16.
- compile `false | true | <mode>`: `nn.Module.compile` in place, so the state-dict keys stay
  the uncompiled names (checkpoints move freely between compiled and eager runs).
"""

import contextlib
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import nn

from podium.errors import PodiumError
from podium.validation import check_choice

__all__ = [
    "PRECISIONS",
    "MEMORY_FORMATS",
    "COMPILE_MODES",
    "Precision",
    "native_bf16",
    "compile_failed",
    "compile_mode",
]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
MEMORY_FORMATS = ("contiguous", "channels_last", "auto")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16(device: torch.device) -> Optional[str]:
    """What computes bf16 natively on `device` (e.g. "AVX512-BF16"), or None."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"CUDA compute capability {major}.{minor}" if major >= 8 else None
    if device.type == "cpu":
        found = [flag.upper().replace("_", "-") for flag in _CPU_BF16_FLAGS if flag in _cpu_flags()]
        return " and ".join(found) or None
    return None


def autocast_supports(device_type: str, dtype: torch.dtype) -> bool:
    """Whether torch.autocast runs `dtype` on `device_type` (torch warns and disables it if not)."""
    if not torch.amp.autocast_mode.is_autocast_available(device_type):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            with torch.autocast(device_type, dtype=dtype):
                return True
        except (UserWarning, RuntimeError):
            return False


def compile_mode(compile: Union[bool, str, None], key: str) -> Optional[str]:
    """false → None; true → "default"; a mode name → itself."""
    if compile is None or compile is False:
        return None
    if compile is True:
        return "default"
    if isinstance(compile, str):
        return check_choice(compile, COMPILE_MODES, key)
    raise PodiumError(
        f"{key} must be true, false or a mode ({', '.join(COMPILE_MODES)}), got {compile!r}"
    )


def compile_failed(error: BaseException) -> bool:
    """Whether `error` comes from torch.compile (Dynamo tracing or a backend compiler)."""
    from torch._dynamo.exc import TorchDynamoException

    kinds = [TorchDynamoException]
    try:
        from torch._inductor.exc import InductorError

        kinds.append(InductorError)
    except ImportError:  # pragma: no cover - older torch
        pass
    return isinstance(error, tuple(kinds))


def _cast(value: Any, fn) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return type(value)((key, _cast(item, fn)) for key, item in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_cast(item, fn) for item in value)
    return value


def _to_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def _channels_last(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.ndim == 4 and tensor.is_floating_point():
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


SCALER_KEYS = ("init_scale", "growth_factor", "backoff_factor", "growth_interval")


class Precision:
    """Precision, memory format and compilation of a model's forward pass on one device.

    Args:
        precision: fp32 | bf16 | fp16 | auto.
        device: where the model runs (autocast and the scaler follow its type).
        memory_format: contiguous | channels_last | auto.
        compile: false | true | a torch.compile mode.
        where: the config block named in error messages (e.g. "engine"; "" for top-level keys).
        scaler: fp16 only: keyword arguments of `torch.amp.GradScaler` (init_scale,
            growth_factor, backoff_factor, growth_interval).
    """

    def __init__(
        self,
        precision: str = "fp32",
        device: Union[str, torch.device] = "cpu",
        memory_format: str = "contiguous",
        compile: Union[bool, str, None] = False,
        where: str = "engine",
        scaler: Optional[dict] = None,
    ):
        self.where = where
        self.device = torch.device(device)
        self.requested = check_choice(precision, PRECISIONS, self._key("precision"))
        check_choice(memory_format, MEMORY_FORMATS, self._key("memory_format"))
        self.reason = ""
        if precision == "auto":
            native = native_bf16(self.device)
            precision = "bf16" if native else "fp32"
            self.reason = f"native bf16: {native}" if native else f"no native bf16 on {self.device}"
        dtype = _DTYPES.get(precision)
        if dtype is not None and not autocast_supports(self.device.type, dtype):
            raise PodiumError(
                f"{self._key('precision')} {precision} is not supported on {self.device} "
                f"(torch.autocast has no {dtype} there): use auto or fp32"
            )
        self.name, self.dtype = precision, dtype
        self.memory_format = memory_format
        self.channels_last = memory_format == "channels_last" or (
            memory_format == "auto" and dtype is not None
        )
        self.compile_mode = compile_mode(compile, self._key("compile"))
        self.scaler = self._scaler(scaler) if precision == "fp16" else None
        if scaler and self.scaler is None:
            raise PodiumError(
                f"{self._key('scaler')} is for precision fp16 (a loss scale); "
                f"precision is {precision}"
            )

    def _scaler(self, params: Optional[dict]) -> torch.amp.GradScaler:
        params = dict(params or {})
        unknown = sorted(set(params) - set(SCALER_KEYS))
        if unknown:
            raise PodiumError(
                f"{self._key('scaler')}/{unknown[0]} is not a GradScaler setting; "
                f"expected one of: {', '.join(SCALER_KEYS)}"
            )
        return torch.amp.GradScaler(self.device.type, **params)

    def _key(self, name: str) -> str:
        return f"{self.where}/{name}" if self.where else name

    def __repr__(self) -> str:
        return (
            f"Precision({self.name}, device={self.device}, channels_last={self.channels_last}, "
            f"compile={self.compile_mode})"
        )

    @property
    def is_default(self) -> bool:
        """fp32, contiguous, eager: exactly what runs without these options."""
        return self.dtype is None and not self.channels_last and self.compile_mode is None

    def describe(self) -> str:
        """One line for the start of a run: what was chosen and, for auto, why."""
        precision = self.name
        if self.requested == "auto":
            precision = f"auto -> {self.name} ({self.reason})"
        memory = "channels_last" if self.channels_last else "contiguous"
        if self.memory_format == "auto":
            memory = f"auto -> {memory}"
        compiled = f"torch.compile (mode {self.compile_mode})" if self.compile_mode else "eager"
        return (
            f"{self.where or 'predict'}: precision {precision}, memory format {memory}, {compiled}"
        )

    # -- forward ----------------------------------------------------------------------------
    def autocast(self):
        """The context the forward pass runs in (nothing for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def to_float32(self, outputs: Any) -> Any:
        """bf16 / fp16 tensors in `outputs` (a tensor, dict, list, tuple) as float32."""
        return outputs if self.dtype is None else _cast(outputs, _to_float32)

    def inputs(self, batch: Any, keys: Optional[Sequence[str]] = None) -> Any:
        """4-D floating tensors of `batch` (only `keys` of a dict, when given) in the memory
        format of the model."""
        if not self.channels_last:
            return batch
        if isinstance(batch, dict) and keys is not None:
            return {
                key: _cast(value, _channels_last) if key in keys else value
                for key, value in batch.items()
            }
        return _cast(batch, _channels_last)

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model in this memory format, compiled in place when asked (once)."""
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.compile_mode is not None and getattr(model, "_compiled_call_impl", None) is None:
            model.compile(mode=None if self.compile_mode == "default" else self.compile_mode)
        return model

    def forward(self, call: Callable, *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)` under autocast, its outputs in float32; a torch.compile
        failure as one PodiumError line."""
        try:
            with self.autocast():
                outputs = call(*args, **kwargs)
        except Exception as error:
            self._raise_compile_error(error)
            raise
        return self.to_float32(outputs)

    def _raise_compile_error(self, error: BaseException) -> None:
        failure = self.compile_error(error)
        if failure is not None:
            raise failure from None

    def compile_error(self, error: BaseException) -> Optional[PodiumError]:
        """A torch.compile failure as one line naming its cause and how to turn compile off."""
        if self.compile_mode is None or not compile_failed(error):
            return None
        inner = error  # the backend's own exception: the cause worth one line
        while getattr(inner, "inner_exception", None) or inner.__cause__:
            inner = getattr(inner, "inner_exception", None) or inner.__cause__
        lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
        cause = f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__
        return PodiumError(
            f"torch.compile failed: {cause[:300]}; set {self._key('compile')}: false to run "
            f"without it"
        )

    # -- backward and step ------------------------------------------------------------------
    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), scaled under fp16 (a compiled backward may fail here first)."""
        try:
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        except Exception as error:
            self._raise_compile_error(error)
            raise

    def step(self, optimizer) -> None:
        """optimizer.step(); under fp16 the scaler's: skipped when a gradient overflowed."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

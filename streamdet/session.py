"""ONNX Runtime session layer: load a streamdet model, validate its metadata, pick the provider, run batches.

Provider choice (``device``):

- ``"auto"``: CUDA when onnxruntime-gpu is installed and ``CUDAExecutionProvider`` is available,
  else CPU. Only available providers are requested, so a CPU-only machine prints nothing.
- ``"cpu"``; ``"cuda"`` or ``"cuda:N"`` (error if CUDA is not available).

:attr:`ModelSession.provider` is the provider that actually runs the graph, read back from the
session after it was created (ONNX Runtime silently falls back to CPU when the CUDA libraries fail
to load, and the attribute then says ``CPUExecutionProvider``).

CPU: ``intra_op_num_threads`` defaults to the usable cores − 1 (at least 1), leaving a core for
audio capture and the rest of the process. CUDA: the input and both outputs are bound to
preallocated device buffers (IO binding) of a fixed batch size (``max_batch``; shorter batches are
zero-padded), the provider option ``enable_cuda_graph`` captures the graph for those fixed shapes,
and the session is warmed up at load so the first real window does not pay for it. When graph
capture is refused (some node not on CUDA), the session is rebuilt without CUDA graphs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from .errors import short_error
from .model_metadata import INPUT_NAME, OUTPUT_NAMES, ModelMetadata, TensorSpec, validate_model

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
BUNDLED_MODEL = BUNDLED_DIR / "alerts.onnx"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


class ModelLoadError(RuntimeError):
    """The model file is missing or is not a loadable ONNX model."""


def usable_cores() -> int:
    """The CPU cores this process may run on (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """Usable CPU cores − 1, at least 1 (a core is left for the audio callback and the rest of the program)."""
    return max(1, usable_cores() - 1)


def resolve_model_path(model: str | os.PathLike[str] | None) -> Path:
    """The model file to load; ``None`` means the bundled default model."""
    if model is None:
        if not BUNDLED_MODEL.exists():
            raise ModelLoadError(
                f"no bundled model is installed (expected {BUNDLED_MODEL}); pass model=PATH to an exported .onnx file"
            )
        return BUNDLED_MODEL
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    return path


def _parse_device(device: str) -> tuple[str, int]:
    device = (device or "auto").lower()
    if device in ("auto", "cpu", "cuda"):
        return device, 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def choose_providers(device: str, available: list[str], cuda_graph: bool = True) -> list:
    """Provider list to request for ``device`` given ONNX Runtime's available providers."""
    kind, index = _parse_device(device)
    if kind == "cuda" and CUDA not in available:
        raise ValueError(
            "device='cuda' but CUDAExecutionProvider is not available "
            "(install the 'gpu' extra, onnxruntime-gpu, and the CUDA libraries)"
        )
    if kind == "cpu" or (kind == "auto" and CUDA not in available):
        return [CPU]
    options = {"device_id": str(index)}
    if cuda_graph:
        options["enable_cuda_graph"] = "1"
    return [(CUDA, options), CPU]


def graph_tensors(args: list) -> list[TensorSpec]:
    """ONNX Runtime's ``NodeArg`` list as :class:`~streamdet.model_metadata.TensorSpec` (symbolic dims as strings)."""
    return [TensorSpec(a.name, a.type, [d if isinstance(d, int) else (None if d is None else str(d)) for d in a.shape])
            for a in args]


class ModelSession:
    """A validated streamdet model on ONNX Runtime; :meth:`run` maps windows to (framewise, clipwise).

    ``run`` is thread-safe (calls are serialised: bound device buffers are shared).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "auto",
        threads: int | None = None,
        max_batch: int = 16,
        io_binding: bool | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = resolve_model_path(model)
        self.max_batch = max(1, int(max_batch))
        self.threads = int(threads) if threads else default_threads()
        self._lock = threading.Lock()
        ort.set_default_logger_severity(3)  # errors only: no provider chatter on CPU-only machines
        available = ort.get_available_providers()
        providers = choose_providers(device, available)
        self._ort = ort
        try:
            self._session = self._make_session(providers)
        except ModelLoadError:
            if providers[0] == CPU:
                raise
            # the CUDA provider refused graph capture at creation: retry without CUDA graphs
            providers = choose_providers(device, available, cuda_graph=False)
            self._session = self._make_session(providers)
        self.metadata = self._validate()
        self.provider: str = self._session.get_providers()[0]
        self.device_id = _parse_device(device)[1]
        self.fixed_batch = self._fixed_batch()
        on_cuda = self.provider == CUDA
        self._binder: _IOBinder | None = None
        if on_cuda or io_binding:
            batch = self.fixed_batch or self.max_batch
            device_type = "cuda" if on_cuda else "cpu"
            try:
                self._binder = _IOBinder(self._session, self.metadata, batch, device_type, self.device_id)
                self._binder.warm_up()
            except Exception:
                if not on_cuda or not isinstance(providers[0], tuple):
                    raise
                # CUDA graph capture refused: rebuild without it, keep IO binding
                self._session = self._make_session(choose_providers(device, available, cuda_graph=False))
                self._binder = _IOBinder(self._session, self.metadata, batch, device_type, self.device_id)
                self._binder.warm_up()
        self.uses_io_binding = self._binder is not None
        self.uses_cuda_graph = on_cuda and self._cuda_graph_enabled()

    def _make_session(self, providers: list):
        ort = self._ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(str(self.path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model ({short_error(exc)})") from None

    def _cuda_graph_enabled(self) -> bool:
        opts = self._session.get_provider_options().get(CUDA, {})
        return opts.get("enable_cuda_graph") in ("1", "True", "true")

    def _validate(self) -> ModelMetadata:
        return validate_model(dict(self._session.get_modelmeta().custom_metadata_map),
                              graph_tensors(self._session.get_inputs()), graph_tensors(self._session.get_outputs()))

    def _fixed_batch(self) -> int | None:
        dim = self._session.get_inputs()[0].shape[0]
        return dim if isinstance(dim, int) and dim > 0 else None

    @property
    def batch_limit(self) -> int:
        """The largest batch one inference call takes."""
        return self.fixed_batch or self.max_batch

    def run(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run ``windows`` [n, window_samples] float32; return framewise [n, steps, C] and clipwise [n, C].

        Batches larger than :attr:`batch_limit` are split; fixed-batch models get zero-padded batches.
        """
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        n = windows.shape[0]
        if windows.ndim != 2 or windows.shape[1] != self.metadata.window_samples:
            raise ValueError(f"windows must be [n, {self.metadata.window_samples}], got {windows.shape}")
        limit = self.batch_limit
        fw, cw = [], []
        with self._lock:
            for i in range(0, n, limit):
                f, c = self._run_batch(windows[i : i + limit])
                fw.append(f)
                cw.append(c)
        if len(fw) == 1:
            return fw[0], cw[0]
        return np.concatenate(fw), np.concatenate(cw)

    def _run_batch(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = batch.shape[0]
        if self._binder is not None:
            return self._binder.run(batch)
        if self.fixed_batch and n != self.fixed_batch:
            padded = np.zeros((self.fixed_batch, batch.shape[1]), np.float32)
            padded[:n] = batch
            batch = padded
        f, c = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        return f[:n], c[:n]


class _IOBinder:
    """Input/outputs bound to preallocated buffers of a fixed batch size on ``device_type``."""

    def __init__(self, session, meta: ModelMetadata, batch: int, device_type: str, device_id: int) -> None:
        from onnxruntime import OrtValue

        self.session = session
        self.batch = batch
        steps, classes = meta.steps_per_window, meta.num_classes
        self.host_in = np.zeros((batch, meta.window_samples), np.float32)
        self.dev_in = OrtValue.ortvalue_from_shape_and_type(self.host_in.shape, np.float32, device_type, device_id)
        self.dev_fw = OrtValue.ortvalue_from_shape_and_type((batch, steps, classes), np.float32, device_type, device_id)
        self.dev_cw = OrtValue.ortvalue_from_shape_and_type((batch, classes), np.float32, device_type, device_id)
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(INPUT_NAME, self.dev_in)
        self.binding.bind_ortvalue_output("framewise", self.dev_fw)
        self.binding.bind_ortvalue_output("clipwise", self.dev_cw)

    def warm_up(self, runs: int = 3) -> None:
        """Run the bound graph a few times (CUDA graphs are captured during these runs)."""
        self.host_in[:] = 0.0
        for _ in range(runs):
            self.dev_in.update_inplace(self.host_in)
            self.session.run_with_iobinding(self.binding)

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = batch.shape[0]
        self.host_in[:n] = batch
        self.host_in[n:] = 0.0
        self.dev_in.update_inplace(self.host_in)
        self.session.run_with_iobinding(self.binding)
        return self.dev_fw.numpy()[:n].copy(), self.dev_cw.numpy()[:n].copy()


"""streamdet.export: PyTorch models to streamdet ONNX files, with verification (needs torch).

Public API::

    from streamdet.export import to_onnx
    report = to_onnx("HTSAT_AudioSet_Saved_1.ckpt", "htsat.onnx")              # any checkpoint load_checkpoint reads
    report = to_onnx(model, "alerts.onnx", window_seconds=2.0, precision="int8", thresholds={...})
    print(report.verification.max_abs_diff)
"""

from streamdet.model_metadata import PRECISIONS  # the one list (docs/DESIGN.md §2)

from .errors import ExportError
from .graph import WindowPlan, plan_window
from .onnx_export import FP32_TOLERANCE, ExportReport, read_labels_file, to_onnx

__all__ = [
    "FP32_TOLERANCE",
    "PRECISIONS",
    "ExportError",
    "ExportReport",
    "WindowPlan",
    "plan_window",
    "read_labels_file",
    "to_onnx",
]

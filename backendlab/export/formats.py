"""The export formats and how close an export must predict to its model. No import: compare reads them too."""

from __future__ import annotations

#: The formats of Keras's ``model.export`` that backendlab checks, and how close an export must predict
#: (Keras's own ONNX tests compare with onnxruntime at 1e-6, 1e-5 for LSTM).
FORMATS = ("tf_saved_model", "onnx")
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5

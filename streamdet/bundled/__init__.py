"""The models installed with streamdet: ``alerts.onnx`` (the default model; see docs/models/alerts.md) and an
example clip with its true events (``example.wav``, ``example.tsv``)."""

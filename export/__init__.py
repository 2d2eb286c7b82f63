"""streamdet.export: PyTorch models to streamdet ONNX files, with verification (needs torch)."""

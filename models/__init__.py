"""ML adapters: ONNX sentence embedder and its torch-free exporter, river factor model."""

"""Pure domain logic: no broker, no onnxruntime, no river. Everything here runs in a unit test."""

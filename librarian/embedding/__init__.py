"""Text to vectors: the ONNX model, its int8 copy, the per-host service and its client, and
the sparse (BM25) term vectors."""

"""What leaves the tool: a trial's config and weights, a Hugging Face folder (one module per standard
transformers class, remote code for the rest) and an ONNX graph.
May use the top-level modules and storage (kept weights); never workers or fronts."""

"""Model building: GGUF -> transformers -> ONNX decoder + tokenizer + manifest.

Needs the ``build`` extra (torch, transformers, gguf, accelerate, onnx); serving
does not. Imports of those packages stay inside functions so that ``router`` imports without them.
"""

"""Compositional text-to-image task: prompt grammar, rendered scenes, verifier, tokenizer."""

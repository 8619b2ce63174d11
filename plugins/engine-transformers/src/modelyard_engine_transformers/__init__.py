"""modelyard's transformers engine."""

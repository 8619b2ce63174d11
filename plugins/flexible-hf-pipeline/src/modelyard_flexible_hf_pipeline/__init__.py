"""modelyard's flexible launcher for Hugging Face pipelines."""

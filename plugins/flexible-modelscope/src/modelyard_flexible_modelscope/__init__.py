"""modelyard's flexible launcher for ModelScope pipelines."""

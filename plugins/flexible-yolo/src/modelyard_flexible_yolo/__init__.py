"""modelyard's flexible launcher for ultralytics YOLO models."""

"""modelyard's HTTP server. It imports no ML library: models run in worker processes."""

__version__ = "0.1.0"

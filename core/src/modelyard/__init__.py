"""modelyard: serve AI models behind one HTTP server.

Plugins import `hookimpl` from here to mark their hook implementations.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("modelyard")

__all__ = ["__version__", "hookimpl"]

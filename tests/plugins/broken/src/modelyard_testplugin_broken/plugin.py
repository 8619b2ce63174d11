"""A plugin whose import fails, as one does when its engine library is missing."""

import modelyard_engine_library_that_is_not_installed  # noqa: F401

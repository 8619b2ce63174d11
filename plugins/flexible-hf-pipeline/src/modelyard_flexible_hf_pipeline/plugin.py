"""The shim: registers the `transformers` flexible launcher. Imports no ML library."""

from modelyard import hookimpl

modelyard_contract = 1


@hookimpl
def register_flexible_launchers(register):
    register("transformers", "modelyard_flexible_hf_pipeline.launcher:launcher",
             requirements=["transformers>=4.40", "pillow"],
             # the name Xinference's documentation registers it by, so its JSON files work unchanged
             aliases=["xinference.model.flexible.launchers.transformers"])

"""The shim: registers the `modelscope` flexible launcher. Imports no ML library."""

from modelyard import hookimpl

modelyard_contract = 1


@hookimpl
def register_flexible_launchers(register):
    register("modelscope", "modelyard_flexible_modelscope.launcher:launcher",
             # bare `modelscope` cannot import its pipelines; its own NLP models (StructBERT and the
             # like) and its transformers fallback need transformers 4, so a server on transformers 5
             # gives these models an env with 4.x while its other models keep 5
             requirements=["modelscope[framework]", "transformers>=4.40,<5", "pillow"],
             aliases=["xinference.model.flexible.launchers.modelscope"])

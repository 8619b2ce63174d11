"""The shim the entry point loads: it registers launchers by import path and imports nothing else."""

from modelyard import hookimpl
from modelyard.engines import Engine


@hookimpl
def register_flexible_launchers(register):
    register("echo-test", "modelyard_testplugin_good.impl:launcher")
    # a launcher whose runtime needs the server lacks: they go into the model's own env
    register("needs-demo", "modelyard_testplugin_good.impl:demo_launcher", requirements=["demo-pkg==2.0"])


@hookimpl
def register_engines(register):
    # the clash test plugin registers this name for embeddings too
    register(Engine(name="shared-name", model_types=("embedding",), impl="modelyard_testplugin_good.impl:Nothing"))


@hookimpl
def register_routes(register):
    from modelyard_testplugin_good.routes import admin_router, router

    register(router, scopes=("inference",), uploads=("/v1/echo/upload",))
    register(admin_router)  # no scopes given: admin

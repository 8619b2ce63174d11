"""The shim the entry point loads: it registers a launcher by import path and imports nothing else."""

from modelyard import hookimpl


@hookimpl
def register_flexible_launchers(register):
    register("echo-test", "modelyard_testplugin_good.impl:launcher")

"""The shim: registers the `yolo` flexible launcher. Imports no ML library."""

from modelyard import hookimpl

modelyard_contract = 1


@hookimpl
def register_flexible_launchers(register):
    register("yolo", "modelyard_flexible_yolo.launcher:launcher",
             # torchvision pins the torch it was built for, so the env gets a matching torch of its own
             # when the server's does not fit; pin the pair in the registration where several builds
             # of the same version exist (a CPU torch beside PyPI's CUDA torchvision does not load)
             requirements=["ultralytics", "torchvision", "pillow"],
             aliases=["xinference.model.flexible.launchers.yolo"])

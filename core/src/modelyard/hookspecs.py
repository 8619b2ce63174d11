"""The contract between modelyard's core and its plugins: every hook a plugin can implement.

Each registration hook receives a `register` callback rather than returning values, so the
callback can grow keyword arguments without breaking plugins, and the core can tag every
registration with the plugin that made it. Hooks are sync and cheap: they run in the server and
in every worker, and must import no ML library.
"""

import pluggy

hookspec = pluggy.HookspecMarker("modelyard")

#: The version of this contract. A plugin may declare the one it was written for as a module
#: attribute `modelyard_contract = 1`; a newer one than this core's is shown as a problem.
CONTRACT_VERSION = 1


@hookspec
def register_model_types(register):
    """Register model types: `register(ModelType(...))`, a name, a registration schema and abilities."""


@hookspec
def register_engines(register):
    """Register engines: `register(Engine(...))`, named per model type, naming the import path of the implementation."""


@hookspec
def register_flexible_launchers(register):
    """Register flexible launchers: `register(name, "pkg.module:function", requirements=(), aliases=())`."""


@hookspec
def register_models(register):
    """Register builtin catalogue entries: `register(model_type, registration_dict)`."""


@hookspec
def register_routes(register):
    """Add an API family to the server: `register(router, scopes=("inference",), uploads=())`, a FastAPI router."""


@hookspec
def register_commands(cli):
    """Add commands to the `modelyard` click group `cli`."""

"""The server's plugin: it contributes `modelyard serve` through the `register_commands` hook."""

from __future__ import annotations

import click

from modelyard import config, hookimpl

modelyard_contract = 1  # the plugin contract this plugin is written for


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.option("--host", default=config.DEFAULT_HOST, show_default=True, help="Address to bind.")
    @click.option("--port", default=config.DEFAULT_PORT, show_default=True, type=int, help="Port to bind.")
    @click.option("--log-level", default="info", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.option("--access-log/--no-access-log", default=False, show_default=True,
                  help="Log every request.")
    @click.option("--allow-launcher", "allow_launchers", multiple=True, metavar="PATTERN",
                  help="Allow flexible launchers given as import paths matching PATTERN (fnmatch on the dotted "
                       "path, e.g. 'my_flexible_model.*'); repeatable. Adds to MODELYARD_ALLOWED_LAUNCHERS.")
    @click.option("--allowed-hosts", multiple=True, metavar="NAMES",
                  help="Host names (comma-separated, '*.example.com' patterns) requests may address the server "
                       "by, besides loopback names and the bound address. Adds to MODELYARD_ALLOWED_HOSTS.")
    @click.option("--cors-origins", multiple=True, metavar="ORIGINS",
                  help="Web origins (comma-separated, e.g. 'https://app.example.com') whose pages may call the "
                       "server; none by default. Adds to MODELYARD_CORS_ORIGINS.")
    @click.option("--insecure-no-auth", is_flag=True,
                  help="Serve beyond loopback without API keys (refused otherwise).")
    @click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None,
                  help="TLS certificate; use TLS or a proxy beyond loopback.")
    @click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None, help="TLS key.")
    @click.option("--restore/--no-restore", default=True, show_default=True,
                  help="Launch again the models that were running when the server last stopped (or was killed).")
    @click.option("--keep-alive", default=None, metavar="DURATION",
                  help="Unload a model idle this long (seconds or '10m'; -1 never, 0 after each request); a launch's "
                       "keep_alive overrides it. Default MODELYARD_KEEP_ALIVE, else never.")
    @click.option("--load-wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                  help="How long a request waits for its model to load before a 503 with Retry-After "
                       "(default MODELYARD_LOAD_WAIT, else 120).")
    @click.option("--load-on-demand", is_flag=True,
                  help="A request naming a registered or builtin model that is not running launches it.")
    @click.option("--max-loaded-models", type=click.IntRange(min=0), default=None, metavar="N",
                  help="Keep at most N models loaded, unloading the least recently used (0: no limit).")
    @click.option("--metrics-public", is_flag=True, help="Serve /metrics without an API key.")
    def serve(host: str, port: int, log_level: str, access_log: bool, **options) -> None:
        """Start the modelyard server."""
        from modelyard_server.serve import run

        run(host=host, port=port, log_level=log_level, access_log=access_log, **options)

"""The server's plugin: it contributes `modelyard serve` through the `register_commands` hook."""

from __future__ import annotations

import click

from modelyard import config, hookimpl


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.option("--host", default=config.DEFAULT_HOST, show_default=True, help="Address to bind.")
    @click.option("--port", default=config.DEFAULT_PORT, show_default=True, type=int, help="Port to bind.")
    @click.option("--log-level", default="info", show_default=True,
                  type=click.Choice(["critical", "error", "warning", "info", "debug"]))
    @click.option("--access-log/--no-access-log", default=False, show_default=True,
                  help="Log every request.")
    def serve(host: str, port: int, log_level: str, access_log: bool) -> None:
        """Start the modelyard server."""
        from modelyard_server.serve import run

        run(host=host, port=port, log_level=log_level, access_log=access_log)

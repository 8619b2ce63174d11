"""The `modelyard` command. Client commands talk to a server at `--endpoint`
(default `MODELYARD_ENDPOINT`, else http://127.0.0.1:9997); plugins add commands through the
`register_commands` hook (the server adds `serve`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from modelyard import config
from modelyard.errors import ModelyardError


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses as JSON, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(words: list[str]) -> dict[str, Any]:
    """`--key value` and `--key=value` pairs into keyword arguments (dashes in keys become '_')."""
    options: dict[str, Any] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or len(word) == 2:
            raise click.UsageError(f"Expected --key value, got {word!r}")
        key, eq, value = word[2:].partition("=")
        if not eq:
            if i + 1 >= len(words):
                raise click.UsageError(f"Option {word} needs a value")
            i += 1
            value = words[i]
        options[key.replace("-", "_")] = parse_value(value)
        i += 1
    return options


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain text table: a header, a rule, one line per row."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    header = "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join([header.rstrip(), rule] + lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def endpoint_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--endpoint` and `--api-key`, the two things a client command needs to reach a server."""
    func = click.option("--api-key", default=None, metavar="KEY", envvar="MODELYARD_API_KEY", show_envvar=True,
                        help="API key, sent as 'Authorization: Bearer KEY'.")(func)
    return click.option("--endpoint", default=None, metavar="URL",
                        help="Server URL [default: $MODELYARD_ENDPOINT or http://127.0.0.1:9997]")(func)


class Unreachable(click.ClickException):
    """No server answers at the endpoint."""


@contextlib.contextmanager
def connected(endpoint: str | None, api_key: str | None = None) -> Iterator[Any]:
    """A client for `endpoint`; its errors become one-line messages instead of tracebacks."""
    import httpx

    from modelyard.client import Client

    url = endpoint or config.endpoint()
    try:
        with Client(url, api_key=api_key) as client:
            yield client
    except ModelyardError as exc:
        raise click.ClickException(exc.message) from None
    except httpx.TransportError as exc:
        raise Unreachable(f"Cannot reach the modelyard server at {url}: {exc}") from None


def client_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command `--endpoint` and a connected `client` as its first argument."""

    @endpoint_option
    @functools.wraps(func)
    def wrapper(endpoint: str | None, api_key: str | None, **kwargs: Any) -> Any:
        with connected(endpoint, api_key) as client:
            return func(client, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelyard-core")
def cli() -> None:
    """modelyard: serve AI models behind one HTTP server."""


@cli.command()
@click.option("--model-type", "-t", required=True, help="LLM, embedding, rerank, image, audio, video or flexible.")
@click.option("--file", "-f", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model's JSON definition.")
@click.option("--persist", is_flag=True, help="Keep the registration across server restarts.")
@client_command
def register(client, model_type: str, path: Path, persist: bool) -> None:
    """Register a custom model from a JSON file."""
    result = client.register_model(model_type, path.read_text(), persist=persist)
    click.echo(f"Registered {result['model_type']} model {result['model_name']!r}"
               + (" (persisted)." if result.get("persist") else "."))


@cli.command()
@click.option("--model-type", "-t", required=True)
@client_command
def registrations(client, model_type: str) -> None:
    """List the registered models of a type."""
    rows = client.list_model_registrations(model_type)
    click.echo(format_table(rows, ["model_name", "model_type", "is_builtin", "is_persisted", "model_description"]))


@cli.command()
@click.option("--model-type", "-t", required=True)
@click.option("--model-name", "-n", required=True)
@client_command
def unregister(client, model_type: str, model_name: str) -> None:
    """Remove a custom model registration."""
    client.unregister_model(model_type, model_name)
    click.echo(f"Unregistered {model_type} model {model_name!r}.")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--model-name", "-n", required=True)
@click.option("--model-type", "-t", default="LLM", show_default=True)
@click.option("--model-uid", "-u", default=None)
@click.option("--model-engine", "-e", default=None)
@click.option("--model-path", default=None)
# Xinference's flags that select the spec; they never reach the engine as options
@click.option("--size-in-billions", "-s", "model_size_in_billions", default=None, help="Select the spec's size.")
@click.option("--model-format", "-f", default=None, help="Select the spec's format (pytorch, ggufv2, ...).")
@click.option("--quantization", "-q", default=None, help="Select the spec's quantization.")
@click.option("--download-hub", default=None, help="Select the spec's hub (huggingface, modelscope).")
# Xinference's env flags
@click.option("--virtual-env-package", "-vp", "virtual_env_packages", multiple=True,
              help="Add or replace a package of the model's virtualenv (repeat for several).")
@click.option("--enable-virtual-env/--disable-virtual-env", "enable_virtual_env", default=None,
              help="Turn the registration's virtualenv on or off for this launch.")
@client_command
def launch(client, model_name: str, model_type: str, model_uid: str | None,
           model_engine: str | None, model_path: str | None, virtual_env_packages: tuple[str, ...],
           enable_virtual_env: bool | None, **selectors: str | None) -> None:
    """Launch a model. Extra `--key value` options go to its launcher or engine (values parsed as JSON).

    Shows the launch's progress (creating its env, installing, loading) until it is ready or failed.
    """
    extra = {**parse_options(click.get_current_context().args),
             **{k: v for k, v in selectors.items() if v is not None}}
    if virtual_env_packages:
        extra["virtual_env_packages"] = list(virtual_env_packages)
    if enable_virtual_env is not None:
        extra["enable_virtual_env"] = enable_virtual_env
    uid = client.launch_model(model_name, model_type=model_type, model_uid=model_uid,
                              model_engine=model_engine, model_path=model_path, wait_ready=False, **extra)
    show = ProgressLine()
    shown = 0
    while True:
        progress = client.get_launch_progress(uid)
        for step in progress["history"][shown:]:
            show.update(f"[{step['progress'] * 100:3.0f}%] {step['stage']}: {step['message']}")
        shown = len(progress["history"])
        if progress["status"] == "READY":
            show.done()
            click.echo(f"Model launched: {uid}")
            return
        if progress["status"] == "FAILED":
            show.done()
            client.terminate_model(uid)  # a failed launch leaves nothing behind, as a waited one does
            raise click.ClickException(f"Failed to launch model {uid!r}: {progress['error']}")
        time.sleep(0.2)


class ProgressLine:
    """One status line, rewritten in place on a terminal and printed once per change elsewhere."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""

    def update(self, text: str) -> None:
        if self.tty:
            click.echo("\r\033[K" + text, nl=False, err=True)
        else:
            click.echo(text, err=True)
        self.last = text

    def done(self) -> None:
        if self.tty and self.last:
            click.echo(err=True)


@cli.command("list")
@client_command
def list_models(client) -> None:
    """List the running models."""
    rows = list(client.list_models().values())
    click.echo(format_table(rows, ["id", "model_type", "model_name", "status", "pid", "model_engine", "error"]))


@cli.command()
@click.option("--model-uid", "-u", required=True)
@client_command
def terminate(client, model_uid: str) -> None:
    """Stop a running model."""
    client.terminate_model(model_uid)
    click.echo(f"Terminated {model_uid}.")


@cli.command()
@click.option("--model-uid", "-u", required=True)
@click.option("--kwargs", "kwargs_json", default=None, metavar="JSON", help="Keyword arguments as a JSON object.")
@click.argument("args", nargs=-1)
@client_command
def infer(client, model_uid: str, kwargs_json: str | None, args: tuple[str, ...]) -> None:
    """Call a flexible model's infer(ARGS..., **KWARGS) and print the JSON result."""
    kwargs = {}
    if kwargs_json:
        kwargs = parse_value(kwargs_json)
        if not isinstance(kwargs, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--kwargs")
    result = client._request("POST", "/v1/flexible/infers",
                             json={"model": model_uid, "args": [parse_value(a) for a in args], **kwargs})
    _echo_json(result)


def _model_with(client, model_uid: str, ability: str, needs: str | None = None):
    """The model's handle, or a one-line error when it cannot `ability` (a flexible model, say)."""
    model = client.get_model(model_uid)
    if not callable(getattr(model, ability, None)):
        from modelyard.types import a_model_of

        kind = model.description.get("model_type")
        hint = " Use `modelyard infer` for a flexible model." if kind == "flexible" else ""
        needs = needs or f"an LLM with the {ability} ability"
        raise click.ClickException(f"Model {model_uid!r} is {a_model_of(str(kind))} and cannot {ability}; that "
                                   f"needs {needs}.{hint}")
    return model


def _preview(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
@click.option("--model-uid", "-u", required=True)
@click.option("--dimensions", type=int, default=None, help="Shorter vectors, where the model allows them.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole OpenAI-shaped answer as JSON.")
@click.argument("texts", nargs=-1, required=True)
@client_command
def embed(client, model_uid: str, dimensions: int | None, as_json: bool, texts: tuple[str, ...]) -> None:
    """Embed TEXTS with an embedding model: one line per text (its vector's length and first values)."""
    model = _model_with(client, model_uid, "create_embedding", "an embedding model")
    result = model.create_embedding(list(texts), **({"dimensions": dimensions} if dimensions else {}))
    if as_json:
        _echo_json(result)
        return
    for item, text in zip(result["data"], texts, strict=True):
        vector = item["embedding"]
        head = ", ".join(f"{x:+.4f}" for x in vector[:4])
        click.echo(f"{item['index']:>3}  {len(vector)} dims  [{head}, ...]  {_preview(text, 40)}")
    click.echo(f"{result['usage']['prompt_tokens']} tokens")


@cli.command()
@click.option("--model-uid", "-u", required=True)
@click.option("--query", "-q", required=True, help="What the documents are scored against.")
@click.option("--top-n", type=int, default=None, help="Show the best N only.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@click.argument("documents", nargs=-1, required=True)
@client_command
def rerank(client, model_uid: str, query: str, top_n: int | None, as_json: bool, documents: tuple[str, ...]) -> None:
    """Score DOCUMENTS against --query with a rerank model, best first."""
    model = _model_with(client, model_uid, "rerank", "a rerank model")
    result = model.rerank(list(documents), query, top_n=top_n, return_len=True)
    if as_json:
        _echo_json(result)
        return
    click.echo(f"{'rank':>4}  {'doc':>3}  {'score':>8}  document")
    for rank, hit in enumerate(result["results"], 1):
        click.echo(f"{rank:>4}  {hit['index']:>3}  {hit['relevance_score']:>8.4f}  {_preview(documents[hit['index']])}")


def _generation_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--max-tokens", type=int, default=None, help="Most tokens to generate.")(func)
    func = click.option("--temperature", type=float, default=None, help="0 for greedy decoding.")(func)
    func = click.option("--seed", type=int, default=None)(func)
    return click.option("--stop", multiple=True, help="A stop string (repeatable).")(func)


def _config(max_tokens: int | None, temperature: float | None, seed: int | None, stop: tuple[str, ...]) -> dict:
    config = {"max_tokens": max_tokens, "temperature": temperature, "seed": seed, "stop": list(stop) or None}
    return {k: v for k, v in config.items() if v is not None}


@cli.command()
@click.option("--model-uid", "-u", required=True)
@click.option("--system", default=None, help="A system message to start the conversation with.")
@_generation_options
@client_command
def chat(client, model_uid: str, system: str | None, **options: Any) -> None:
    """Chat with an LLM; each reply streams as it is generated. An empty line or Ctrl-D ends."""
    model = _model_with(client, model_uid, "chat")
    messages = [{"role": "system", "content": system}] if system else []
    config = {"stream": True, **_config(**options)}
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False, err=True)
        except (EOFError, click.Abort):
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = []
        for chunk in model.chat(messages, config):
            delta = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
            if delta:
                reply.append(delta)
                click.echo(delta, nl=False)
        click.echo()
        messages.append({"role": "assistant", "content": "".join(reply)})


@cli.command()
@click.option("--model-uid", "-u", required=True)
@click.argument("prompt", required=False)
@click.option("--stream/--no-stream", default=True, show_default=True)
@_generation_options
@client_command
def generate(client, model_uid: str, prompt: str | None, stream: bool, **options: Any) -> None:
    """Complete PROMPT (or standard input) with an LLM."""
    model = _model_with(client, model_uid, "generate")
    if prompt is None:
        prompt = sys.stdin.read()
    config = {"stream": stream, **_config(**options)}
    if not stream:
        click.echo(model.generate(prompt, config)["choices"][0]["text"])
        return
    for chunk in model.generate(prompt, config):
        if chunk.get("choices"):
            click.echo(chunk["choices"][0]["text"], nl=False)
    click.echo()


@cli.command()
@click.option("--model-uid", "-u", required=True)
@click.option("--lines", "-n", default=100, show_default=True)
@client_command
def logs(client, model_uid: str, lines: int) -> None:
    """Show the last lines a model's worker printed."""
    click.echo(client.model_logs(model_uid, lines))


@cli.group()
def venv() -> None:
    """Per-model virtualenvs: list, remove, prune."""


@venv.command("list")
@client_command
def venv_list(client) -> None:
    """List the virtualenvs, their packages, sizes and users."""
    rows = client.list_virtualenvs()
    for row in rows:
        row["size"] = f"{row['size_bytes'] / 2**20:.1f} MiB"
    click.echo(format_table(rows, ["key", "packages", "size", "used_by", "path"]))


@venv.command("remove")
@click.argument("key")
@client_command
def venv_remove(client, key: str) -> None:
    """Remove a virtualenv no running model uses."""
    client.remove_virtualenv(key)
    click.echo(f"Removed virtualenv {key}.")


@venv.command("prune")
@client_command
def venv_prune(client) -> None:
    """Remove every virtualenv no running model uses."""
    removed = client.prune_virtualenvs()
    click.echo(f"Removed {len(removed)} virtualenv(s)" + (f": {', '.join(removed)}" if removed else "."))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")
@click.option("--local", is_flag=True, help="Show the plugins this machine's Python loads, without a server.")
@endpoint_option
def plugins(as_json: bool, local: bool, endpoint: str | None, api_key: str | None) -> None:
    """List plugins, their versions and contract, what they registered, and their problems: a load
    error, a name another plugin holds, a hook that raised, an unknown hook."""
    if local:
        from modelyard.plugins import get_plugins

        rows = get_plugins().describe()
    else:
        with connected(endpoint, api_key) as client:
            rows = client.list_plugins()
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        row["registered"] = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["registered"].items())
        row["version"] = row["version"] or ""
        row["contract"] = row.get("contract") or ""
        # a failure to load, then what loaded wrong: clashes, hooks that raised, unknown hooks
        row["problems"] = "; ".join(filter(None, [row["error"], *row.get("problems", [])]))
    click.echo(format_table(rows, ["name", "distribution", "version", "contract", "registered", "problems"]))


@cli.group()
def keys() -> None:
    """API keys: create, list, revoke.

    Against the server at --endpoint (with an admin key); with --local, or when no server answers
    there, in the state folder (MODELYARD_HOME) itself, which is how the first key is made.
    """


class LocalKeys:
    """The key calls of the client, made on the state folder's database."""

    def __init__(self) -> None:
        from modelyard.keys import KeyStore
        from modelyard.store import Store

        self.home = config.home()
        self.store = Store(self.home / "modelyard.db")
        self.keys = KeyStore(self.store)

    def create_key(self, scopes: list[str], models: list[str], expires_in: str | None, name: str | None) -> dict:
        key, value = self.keys.create(scopes, models=models, expires_in=expires_in, name=name)
        return {**key.describe(), "key": value}

    def list_keys(self) -> list[dict]:
        return [key.describe() for key in self.keys.list()]

    def revoke_key(self, key_id: str) -> dict:
        return self.keys.revoke(key_id).describe()


def key_commands(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a `keys` command `--local`, `--endpoint`, `--api-key`, and the client or LocalKeys to use."""

    @click.option("--local", is_flag=True, help="Use the state folder (MODELYARD_HOME), not a server.")
    @endpoint_option
    @functools.wraps(func)
    def wrapper(local: bool, endpoint: str | None, api_key: str | None, **kwargs: Any) -> Any:
        if not local:
            try:
                with connected(endpoint, api_key) as client:
                    client.status()
                    return func(client, **kwargs)
            except Unreachable:
                pass
            click.echo(f"No server answers at {endpoint or config.endpoint()}; using the state folder "
                       f"{config.home()}.", err=True)
        backend = LocalKeys()
        try:
            return func(backend, **kwargs)
        except ModelyardError as exc:
            raise click.ClickException(exc.message) from None
        finally:
            backend.store.close()

    return wrapper


def _when(timestamp: float | None) -> str | None:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else None


@keys.command("create")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(["inference", "models:read", "models:launch", "models:register", "admin"]),
              help="A scope of the key (repeatable).")
@click.option("--models", "models", multiple=True, metavar="PATTERN",
              help="Limit an inference key to these model uids or name patterns (repeatable).")
@click.option("--expires", default=None, metavar="DURATION", help="Expire after e.g. 30d, 12h, 3600.")
@click.option("--name", default=None, help="What the key is for.")
@key_commands
def keys_create(backend, scopes: tuple[str, ...], models: tuple[str, ...], expires: str | None,
                name: str | None) -> None:
    """Create a key; its value is shown this once."""
    created = backend.create_key(list(scopes), list(models), expires, name)
    click.echo(f"Created key {created['id']} ({', '.join(created['scopes'])}"
               + (f"; models {', '.join(created['models'])}" if created["models"] else "")
               + (f"; expires {_when(created['expires_at'])}" if created["expires_at"] else "") + ").")
    click.echo("Its value, shown this once; keep it:", err=True)
    click.echo(created["key"])


@keys.command("list")
@key_commands
def keys_list(backend) -> None:
    """List the keys by id and prefix (never their values)."""
    rows = backend.list_keys()
    for row in rows:
        for field in ("created_at", "expires_at", "last_used_at", "revoked_at"):
            row[field] = _when(row[field])
    click.echo(format_table(rows, ["id", "prefix", "name", "scopes", "models", "created_at", "expires_at",
                                   "last_used_at", "revoked_at"]))


@keys.command("revoke")
@click.argument("key_id")
@key_commands
def keys_revoke(backend, key_id: str) -> None:
    """Revoke a key: it stops working at once."""
    backend.revoke_key(key_id)
    click.echo(f"Revoked key {key_id}.")


def main(argv: list[str] | None = None) -> None:
    from modelyard.plugins import get_plugins

    get_plugins().register_commands(cli)
    cli.main(args=argv, prog_name="modelyard")


if __name__ == "__main__":
    main(sys.argv[1:])

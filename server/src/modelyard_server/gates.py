"""The gates in front of everything a request could make run on this machine.

Three things a registration or a launch names can run code on the host: environment variables
given to a worker (`LD_PRELOAD`, `PYTHONWARNINGS` importing a module, `BROWSER` run by it), a
flexible launcher's import path (importing a module runs it), and the sources of a virtualenv's
packages (building a package runs its `setup.py`). Each is refused unless the operator's settings
allow it, with a 403 that names the setting and the value that would.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement, Requirement

from modelyard import config, pipconfig
from modelyard.errors import Forbidden, InvalidRequest
from modelyard.keys import ApiKey
from modelyard.plugins import Plugins
from modelyard.types import Registration, VirtualEnvSettings
from modelyard.types.flexible import FlexibleRegistration
from modelyard.venv import SYSTEM_MARKER, as_list

# Variables a launch may always set: they tune an engine and load nothing.
SAFE_ENVS = frozenset({
    "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
    "MODELYARD_LOAD_PLUGINS", "MODELYARD_DISABLE_PLUGIN_AUTOLOAD", "MODELYARD_TRACE_PLUGINS",
    "MODELYARD_TORCH_THREADS",
})
# Variables that make a program load or run code, or that hold the server's own settings and
# secrets: refused even when MODELYARD_ALLOWED_ENVS lists them.
NEVER_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "GIT_", "PIP_", "UV_", "MODELYARD_ALLOWED_")
NEVER_ENVS = frozenset({
    "BROWSER", "PATH", "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES",
    "BASH_ENV", "ENV", "SHELL", "SHELLOPTS", "BASHOPTS", "PS4", "PROMPT_COMMAND", "IFS",
    "EDITOR", "VISUAL", "PAGER", "MANPAGER", "LESSOPEN", "LESSCLOSE", "SSH_ASKPASS", "SUDO_ASKPASS",
    "PERL5OPT", "PERL5LIB", "PERLLIB", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "NODE_PATH",
    "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS",
    "CC", "CXX", "CPP", "LD", "LDSHARED", "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS",
    "OPENSSL_CONF", "OPENSSL_ENGINES", "SSLKEYLOGFILE",
    "MODELYARD_HOME", "MODELYARD_VENV_DIR", "MODELYARD_MODEL_UID",
}) | config.SECRET_VARIABLES
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_never_allowed(name: str) -> bool:
    upper = name.upper()
    return upper in NEVER_ENVS or upper.startswith(NEVER_ENV_PREFIXES)


def comma_list(raw: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (raw or "").split(",") if part.strip())


# -- package sources ----------------------------------------------------------------------------

def package_location(text: str) -> str | None:
    """The URL or local path a package requirement is fetched from, if it names one."""
    text = text.strip()
    if SYSTEM_MARKER.match(text):
        return None
    try:
        url = Requirement(text).url
    except InvalidRequirement:
        url = None
    if url:
        return url
    # uv also takes a bare path, file name or URL as a package (`a-1.0-py3-none-any.whl` is even a
    # valid requirement name): never let one through unchecked
    looks_like_location = ("://" in text or text.startswith(("/", ".", "~")) or os.sep in text
                           or text.lower().endswith((".whl", ".tar.gz", ".tgz", ".zip", ".tar.bz2")))
    return text if looks_like_location else None


def _local_path(location: str) -> str | None:
    """The real path of a local location (a path or a file:// URL); None for a remote URL."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        path = unquote(parts.path)
    elif "://" in location:
        return None
    else:
        path = location
    return os.path.realpath(os.path.expanduser(path))


def _url_key(location: str) -> tuple[str, str, str]:
    parts = urlsplit(location)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


class PackageSources:
    """The places packages may come from: `MODELYARD_ALLOWED_PACKAGE_SOURCES` and the server's own
    pip configuration (what `inherit_pip_config` passes on is the operator's, so it counts)."""

    def __init__(self, entries: Iterable[str]):
        self.folders: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.hosts: set[str] = set()
        for entry in entries:
            local = _local_path(entry)
            if local is not None and (entry.startswith(("/", ".", "~")) or entry.startswith("file:")):
                self.folders.append(local)
            elif "://" in entry:
                key = _url_key(entry)
                self.urls.append(key)
                self.hosts.add(key[1])
                self.hosts.add(key[1].rsplit("@", 1)[-1].split(":")[0])
            else:
                self.hosts.add(entry.lower())  # a bare name: a trusted host

    def allows(self, location: str) -> bool:
        local = _local_path(location)
        if local is not None:
            return any(local == folder or local.startswith(folder.rstrip(os.sep) + os.sep) for folder in self.folders)
        scheme, netloc, path = _url_key(location)
        return any(scheme == s and netloc == n and (path == p or path.startswith(p + "/"))
                   for s, n, p in self.urls)

    def allows_host(self, host: str) -> bool:
        return host.lower() in self.hosts


def _suggestion(location: str) -> str:
    """What to add to the allowed sources for `location`: a local file's folder, else the location."""
    local = _local_path(location)
    if local is not None and not os.path.isdir(local):
        return os.path.dirname(local)
    return local or location


# -- the gates ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gates:
    """The operator's allow-lists; empty by default, so nothing that runs code gets through."""

    allowed_envs: tuple[str, ...] = ()
    allowed_launchers: tuple[str, ...] = ()
    allowed_package_sources: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, *, allow_launchers: Iterable[str] = ()) -> Gates:
        return cls(allowed_envs=comma_list(os.environ.get("MODELYARD_ALLOWED_ENVS")),
                   allowed_launchers=comma_list(os.environ.get("MODELYARD_ALLOWED_LAUNCHERS")) + tuple(allow_launchers),
                   allowed_package_sources=comma_list(os.environ.get("MODELYARD_ALLOWED_PACKAGE_SOURCES")))

    # -- environment variables ----------------------------------------------------------------

    def check_envs(self, envs: Mapping[str, str]) -> None:
        for name, value in envs.items():
            if not ENV_NAME.match(name):
                raise InvalidRequest(f"envs: {name!r} is not an environment variable name.")
            if "\x00" in value:
                raise InvalidRequest(f"envs: the value of {name} holds a NUL character.")
            if env_never_allowed(name):
                raise Forbidden(f"envs: {name} is never accepted at launch: variables that make a program load "
                                "or run code, or that hold modelyard's own settings and keys (LD_*, PYTHON*, "
                                "BROWSER, PATH, ...), are refused even when MODELYARD_ALLOWED_ENVS lists them.")
            if name in SAFE_ENVS or any(fnmatchcase(name, pattern) for pattern in self.allowed_envs):
                continue
            raise Forbidden(f"envs: {name} may not be set at launch. A launch may set the engine variables "
                            f"{', '.join(sorted(SAFE_ENVS))} and those the server's setting "
                            f"MODELYARD_ALLOWED_ENVS names (now: {', '.join(self.allowed_envs) or 'none'}); "
                            f"add {name} to MODELYARD_ALLOWED_ENVS to allow it.")

    # -- flexible launchers -------------------------------------------------------------------

    def check_launcher(self, launcher: str, plugins: Plugins, key: ApiKey | None = None,
                       doing: str = "Using") -> None:
        """A registered launcher (or alias) always passes; an import path must be allowed, and with
        keys on needs an admin key."""
        if not plugins.names_import_path(launcher):
            return  # a bare name that is not registered fails later, naming the registered ones
        dotted = launcher.replace(":", ".")
        if any(fnmatchcase(dotted, pattern) for pattern in self.allowed_launchers):
            require_admin(key, f"{doing} a launcher given as an import path ({launcher!r})")
            return
        module = dotted.rsplit(".", 1)[0]
        raise Forbidden(f"launcher {launcher!r} is an import path, and importing it runs its module's code on "
                        "this machine, so import paths must match the server's setting MODELYARD_ALLOWED_LAUNCHERS "
                        f"(now: {', '.join(self.allowed_launchers) or 'empty'}). Add {dotted!r} (or a pattern such "
                        f"as '{module}.*') to MODELYARD_ALLOWED_LAUNCHERS, or start the server with "
                        f"--allow-launcher '{dotted}'. Registered launchers need no setting: "
                        f"{', '.join(sorted(plugins.launchers)) or 'none is installed'}.")

    # -- virtualenv package sources -----------------------------------------------------------

    def check_virtualenv(self, settings: VirtualEnvSettings | None, packages: Iterable[str] = (),
                         find_links: Iterable[str] = ()) -> None:
        """Every place a model's packages would come from, other than the default index and the
        server's own pip configuration, must be an allowed package source."""
        settings = settings or VirtualEnvSettings()
        named = [(f"package {p!r}", loc) for p in [*settings.packages, *packages]
                 if (loc := package_location(p)) is not None]
        named += [("index_url", settings.index_url)] if settings.index_url else []
        named += [("extra_index_url", url) for url in as_list(settings.extra_index_url)]
        named += [("find_links", link) for link in [*as_list(settings.find_links), *find_links]]
        hosts = as_list(settings.trusted_host)
        if not named and not hosts:
            return
        inherited = pipconfig.read()
        sources = PackageSources([*self.allowed_package_sources, *filter(None, [inherited.index_url]),
                                  *inherited.extra_index_urls, *inherited.find_links, *inherited.trusted_hosts])
        for what, location in named:
            if not sources.allows(location):
                raise Forbidden(f"virtualenv {what}: {location!r} is not an allowed package source. Packages are "
                                "built on this machine, and building one runs its code, so every URL, local path, "
                                "index and find-links location must be listed in the server's setting "
                                "MODELYARD_ALLOWED_PACKAGE_SOURCES (comma-separated URLs and local folders; the "
                                "server's own pip configuration counts as listed). Add "
                                f"{_suggestion(location)!r} to it to allow this one.")
        for host in hosts:
            if not sources.allows_host(host):
                raise Forbidden(f"virtualenv trusted_host {host!r} is not an allowed package source: list it (or a "
                                "URL on it) in the server's setting MODELYARD_ALLOWED_PACKAGE_SOURCES.")

    # -- whole requests -----------------------------------------------------------------------

    def check_registration(self, registration: Registration, plugins: Plugins, key: ApiKey | None = None) -> None:
        if isinstance(registration, FlexibleRegistration):
            self.check_launcher(registration.launcher, plugins, key, "Registering")
        if registration.virtualenv is not None and registration.virtualenv.packages:
            require_admin(key, "Registering virtualenv packages (their builds run code)")
        if asks_remote_code(registration.model_dump()):
            require_admin(key, "trust_remote_code (it runs the model repository's code)")
        self.check_virtualenv(registration.virtualenv)

    def check_launch(self, request: Any, registration: Registration, plugins: Plugins,
                     key: ApiKey | None = None) -> None:
        """A launch re-checks its registration too: the settings may have changed since."""
        self.check_envs(request.envs or {})
        if isinstance(registration, FlexibleRegistration):
            self.check_launcher(registration.launcher, plugins, key, "Launching")
        if request.virtual_env_packages:
            require_admin(key, "virtual_env_packages (their builds run code)")
        if asks_remote_code(request.model_extra) or asks_remote_code(registration.model_dump()):
            require_admin(key, "trust_remote_code (it runs the model repository's code)")
        if request.enable_virtual_env is not False:
            self.check_virtualenv(registration.virtualenv, request.virtual_env_packages or (),
                                  request.virtual_env_find_links or ())


def require_admin(key: ApiKey | None, what: str) -> None:
    """With keys on, what runs code on the host needs an admin key (on top of the allow-lists)."""
    if key is not None and not key.admin:
        raise Forbidden(f"{what} needs an admin key; this key has {', '.join(key.scopes)}.")


def asks_remote_code(value: Any, _depth: int = 0) -> bool:
    """Whether `trust_remote_code` is set anywhere in launch options, launcher_args or their nested kwargs."""
    if _depth > 16:
        return False
    if isinstance(value, str) and _depth > 0 and "trust_remote_code" in value:
        try:  # Xinference's launcher_args: a JSON string
            return asks_remote_code(json.loads(value), _depth + 1)
        except ValueError:
            return False
    if isinstance(value, dict):
        return any((k == "trust_remote_code" and v not in (False, None, 0, "false", "False", ""))
                   or asks_remote_code(v, _depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(asks_remote_code(v, _depth + 1) for v in value)
    return False

"""Per-model virtualenvs, created with uv: each model gets its packages, and only it does.

An env is planned in the server (cheap: package metadata only, no imports) and built in a thread:

- Requirements the base environment (the server's) already satisfies are dropped, so a model
  whose needs are all met gets no env at all, and `#system_numpy#` costs nothing, offline too.
- Envs are content-addressed: the key hashes everything that decides their content, so models
  with equal needs share one env.
- The env sees the server's packages behind its own through a `.pth` bridge that calls
  `site.addsitedir` on each of the server's site directories (so their own `.pth` files, editable
  installs included, work), rather than `--system-site-packages`, which would expose the *base
  interpreter's* packages when the server itself runs in a venv.
- uv resolves without seeing inherited packages, so packages are installed with `--no-deps`, in
  rounds: after each round, the dependencies that neither the env nor the base satisfies are
  installed next. A dependency the base already has is never downloaded again.
- A build happens in place under a per-key lock that holds across processes, and counts as done
  only once its completion marker is written, last. A folder without the marker is a failed or
  interrupted build and is built again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import site
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from modelyard import pipconfig
from modelyard.errors import Conflict, InvalidRequest, NotFound
from modelyard.types import VirtualEnvSettings

SYSTEM_MARKER = re.compile(r"^#system_(.+)#$")
COMPLETE = ".modelyard-complete"
MANIFEST = "modelyard-env.json"
BRIDGE = "_modelyard_base_env.pth"
MAX_ROUNDS = 12

Progress = Callable[[str, float, str], None]


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def base_site_dirs() -> list[str]:
    """The server environment's site directories, in the order its own sys.path has them."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return [d for d in dirs if os.path.isdir(d)]


# -- requirements -----------------------------------------------------------------------------

def parse_requirement(text: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as exc:
        raise InvalidRequest(f"Invalid package requirement {text!r}: {exc}") from None


def _distribution(name: str, paths: list[str] | None = None) -> importlib.metadata.Distribution | None:
    """The first distribution of `name` on `paths` (default sys.path): the one an import would find."""
    return next(iter(importlib.metadata.distributions(name=canonicalize_name(name), path=paths or sys.path)), None)


def installed_version(name: str, paths: list[str] | None = None) -> str | None:
    dist = _distribution(name, paths)
    return dist.version if dist is not None else None


def expand_system_markers(packages: Iterable[str]) -> list[str]:
    """`#system_<pkg>#` -> `<pkg>==<the base environment's version, without a +local tag>`."""
    out = []
    for text in packages:
        match = SYSTEM_MARKER.match(text.strip())
        if match is None:
            out.append(text.strip())
            continue
        name = match.group(1)
        version = installed_version(name)
        if version is None:
            raise InvalidRequest(f"{text} asks for the server environment's {name}, but {name} is not "
                                 "installed there; install it or name a version instead.")
        out.append(f"{name}=={version.split('+')[0]}")
    return out


def merge_packages(packages: Iterable[str], overrides: Iterable[str]) -> list[str]:
    """`packages` with each of `overrides` replacing the same-named package, or added."""
    merged: dict[str, str] = {}
    for text in list(packages) + list(overrides):
        merged[package_name(text)] = text  # an override replaces the same-named entry, in its place
    return list(merged.values())


def package_name(text: str) -> str:
    """The distribution name of a requirement or a `#system_<pkg>#` marker, canonicalized."""
    marker = SYSTEM_MARKER.match(text.strip())
    return canonicalize_name(marker.group(1) if marker else parse_requirement(text).name)


def package_names(packages: Iterable[str]) -> list[str]:
    """The distribution names of requirements and markers, each once, in order."""
    return list(dict.fromkeys(package_name(text) for text in packages))


def satisfied(req: Requirement, paths: list[str] | None = None, extras: Iterable[str] = ("",), _depth: int = 0) -> bool:
    """Whether the distributions on `paths` meet `req`, read from their metadata only."""
    if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
        return True  # not for this platform or these extras
    version = installed_version(req.name, paths)
    if version is None:
        return False
    try:
        if not req.specifier.contains(Version(version), prereleases=True):
            return False
    except InvalidVersion:
        return False
    if req.extras and _depth < 4:
        return all(satisfied(dep, paths, req.extras, _depth + 1) for dep in _extra_requirements(req, paths))
    return True


# -- planning ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnvSpec:
    """Everything that decides an env's content; its key is their hash."""

    packages: tuple[str, ...]
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    find_links: tuple[str, ...]
    trusted_hosts: tuple[str, ...]
    no_build_isolation: bool
    python: str
    base: tuple[str, ...]
    excluded: tuple[str, ...] = ()  # package names never installed here (an engine's rule)
    constraints: tuple[str, ...] = ()  # pins for the packages that are

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]


def plan(settings: VirtualEnvSettings | None, *, enable: bool | None = None, extra_packages: Iterable[str] = (),
         extra_find_links: Iterable[str] = (), requirements: Iterable[str] = (), excluded: Iterable[str] = (),
         constraints: Iterable[str] = ()) -> EnvSpec | None:
    """The env a model needs, or None when the server's environment already has everything.

    `extra_packages` (launch-time `virtual_env_packages`) add to or replace the registration's;
    `requirements` are the engine's or launcher's runtime requirements; `excluded` names packages
    its engine forbids in its env (never installed, and a 400 when asked for), `constraints` pin
    those that are installed. `enable=False` turns the registration's env off.
    """
    if enable is False:
        return None
    settings = settings or VirtualEnvSettings()
    wanted = merge_packages(settings.packages, extra_packages)
    wanted = expand_system_markers(wanted) + [r for r in requirements]
    banned = {canonicalize_name(name) for name in excluded}
    missing: dict[str, Requirement] = {}
    for text in wanted:
        req = parse_requirement(text)
        if canonicalize_name(req.name) in banned:
            raise InvalidRequest(f"{req.name} must not be installed into this model's env: its engine forbids "
                                 f"{', '.join(sorted(banned))} there (a build of them breaks it). Leave it out.")
        if not satisfied(req):
            missing[str(req)] = req
    for text in constraints:
        parse_requirement(text)
    if not missing:
        return None
    inherited = pipconfig.read() if settings.inherit_pip_config else pipconfig.PipConfig()
    return EnvSpec(
        packages=tuple(sorted(missing)),
        index_url=settings.index_url or inherited.index_url,
        extra_index_urls=tuple(as_list(settings.extra_index_url) + inherited.extra_index_urls),
        find_links=tuple(as_list(settings.find_links) + list(extra_find_links) + inherited.find_links),
        trusted_hosts=tuple(as_list(settings.trusted_host) + inherited.trusted_hosts),
        no_build_isolation=bool(settings.no_build_isolation),
        python=f"{sys.implementation.name}-{sys.version.split()[0]}",
        base=tuple(base_site_dirs()),
        excluded=tuple(sorted(banned)),
        constraints=tuple(constraints) + tuple(inherited.constraints),
    )


# -- building and managing --------------------------------------------------------------------

def uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _extra_requirements(req: Requirement, paths: list[str] | None) -> list[Requirement]:
    """The requirements the extras of `req` add to its package, as installed on `paths`."""
    if not req.extras:
        return []
    dist = _distribution(req.name, paths)
    out = []
    for text in (dist.requires or []) if dist is not None else []:
        dep = Requirement(text)
        if dep.marker is not None and any(dep.marker.evaluate({"extra": e}) for e in req.extras):
            out.append(dep)
    return out


class InstallFailed(InvalidRequest):
    pass


class Virtualenvs:
    """The envs under `root` (`config.venv_dir()`), and which models use them."""

    def __init__(self, root: Path):
        self.root = root
        self.locks = root / ".locks"
        self.locks.mkdir(parents=True, exist_ok=True)
        self.users: dict[str, set[str]] = {}
        self._users_lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.root / key

    def python(self, key: str) -> Path:
        return self.path(key) / "bin" / "python"

    def complete(self, key: str) -> bool:
        return (self.path(key) / COMPLETE).exists()

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with open(self.locks / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- use --------------------------------------------------------------------------------

    def acquire(self, key: str, uid: str) -> None:
        with self._users_lock:
            self.users.setdefault(key, set()).add(uid)

    def release(self, key: str, uid: str) -> None:
        with self._users_lock:
            users = self.users.get(key)
            if users is not None:
                users.discard(uid)
                if not users:
                    del self.users[key]

    def used_by(self, key: str) -> list[str]:
        with self._users_lock:
            return sorted(self.users.get(key, ()))

    # -- build ------------------------------------------------------------------------------

    def ensure(self, spec: EnvSpec, progress: Progress) -> Path:
        """The python of the env for `spec`, built first if needed. Blocking: run it in a thread."""
        key = spec.key
        with self._locked(key):
            if not self.complete(key):
                self._build(spec, progress)
        return self.python(key)

    def _build(self, spec: EnvSpec, progress: Progress) -> None:
        path = self.path(spec.key)
        shutil.rmtree(path, ignore_errors=True)  # a failed or interrupted build
        started = time.monotonic()
        try:
            progress("creating_env", 0.05, f"creating virtualenv {spec.key}")
            self._uv(["venv"], ["--quiet", "--python", sys.executable, str(path)], failure="Creating the virtualenv")
            env_site = self._site_dir(path)
            bridge = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in spec.base) + "\n"
            (env_site / BRIDGE).write_text(bridge)
            self._install(spec, path, env_site, progress)
            (path / MANIFEST).write_text(json.dumps({"key": spec.key, "spec": asdict(spec),
                                                     "built_at": time.time()}, indent=2))
            (path / COMPLETE).write_text(f"{time.monotonic() - started:.3f}\n")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        with open(self.root / "builds.log", "a") as log:
            log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} built {spec.key} in "
                      f"{time.monotonic() - started:.2f}s: {' '.join(spec.packages)}\n")

    def _site_dir(self, path: Path) -> Path:
        found = list(path.glob("lib/python*/site-packages"))
        if not found:
            raise InstallFailed(f"The new virtualenv at {path} has no site-packages folder")
        return found[0]

    def _install(self, spec: EnvSpec, path: Path, env_site: Path, progress: Progress) -> None:
        view = [str(env_site), *spec.base]
        wanted: dict[str, set[str]] = {}  # every requirement asked for so far, by package name
        extras: dict[str, set[str]] = {}
        todo = list(spec.packages)
        for round_no in range(MAX_ROUNDS):
            names, grew = set(), False
            for text in todo:
                req = Requirement(text)
                name = canonicalize_name(req.name)
                names.add(name)
                if text not in wanted.setdefault(name, set()):
                    wanted[name].add(text)
                    grew = True
                extras.setdefault(name, {""}).update(req.extras)
            if not grew:
                asked = "; ".join(f"{n}: {', '.join(sorted(wanted[n]))}" for n in sorted(names))
                raise InstallFailed(f"The packages' requirements cannot all be met ({asked}).")
            # every requirement ever made of these names, so uv picks a version that meets them all
            batch = sorted(t for n in names for t in wanted[n])
            progress("installing", min(0.6, 0.1 + 0.1 * round_no), "installing " + ", ".join(batch))
            self._uv(["pip", "install"], ["--python", str(self.python(spec.key)), "--no-deps",
                                          *self._index_args(spec), *self._constraint_args(spec, path), *batch],
                     failure=f"Installing {', '.join(batch)}")
            todo = [t for t in self._unmet_dependencies(env_site, view, extras)
                    if canonicalize_name(Requirement(t).name) not in spec.excluded]
            if not todo:
                return
        raise InstallFailed(f"Dependencies did not settle after {MAX_ROUNDS} rounds; last: {', '.join(todo)}")

    @staticmethod
    def _unmet_dependencies(env_site: Path, view: list[str], extras: dict[str, set[str]]) -> list[str]:
        """What the env's packages require that neither the env nor the base environment has."""
        unmet: dict[str, None] = {}
        for dist in importlib.metadata.distributions(path=[str(env_site)]):
            wanted_extras = extras.get(canonicalize_name(dist.metadata["Name"]), {""})
            for text in dist.requires or []:
                req = Requirement(text)
                if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in wanted_extras):
                    continue
                plain = Requirement(f"{req.name}{req.specifier}")
                if not satisfied(plain, view):
                    extra_part = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
                    unmet[f"{req.name}{extra_part}{req.specifier}"] = None
                    continue
                # the package is there: what its requested extras need may not be
                for dep in _extra_requirements(req, view):
                    if not satisfied(dep, view):
                        unmet[f"{dep.name}{dep.specifier}"] = None
        return list(unmet)

    @staticmethod
    def _constraint_args(spec: EnvSpec, path: Path) -> list[str]:
        if not spec.constraints:
            return []
        constraints = path / "modelyard-constraints.txt"
        constraints.write_text("".join(f"{c}\n" for c in spec.constraints))
        return ["--constraint", str(constraints)]

    @staticmethod
    def _index_args(spec: EnvSpec) -> list[str]:
        # pip takes the best version any index offers; uv's default takes the first index that has the
        # package at all, so a local mirror holding only transformers 5 would hide PyPI's 4.x
        args: list[str] = ["--index-strategy", "unsafe-best-match"]
        if spec.index_url:
            args += ["--index-url", spec.index_url]
        for url in spec.extra_index_urls:
            args += ["--extra-index-url", url]
        for link in spec.find_links:
            args += ["--find-links", link]
        for host in spec.trusted_hosts:
            args += ["--allow-insecure-host", host]
        if spec.no_build_isolation:
            args.append("--no-build-isolation")
        return args

    @staticmethod
    def _uv(command: list[str], args: list[str], failure: str) -> None:
        """Run `uv COMMAND ARGS`, ignoring uv's config files: an env's content is its spec alone."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
        env.update(NO_COLOR="1", UV_NO_PROGRESS="1")
        result = subprocess.run([uv_binary(), *command, "--no-config", *args], env=env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip()
            raise InstallFailed(f"{failure} into the model's virtualenv failed (uv exit code "
                                f"{result.returncode}):\n{lines}")

    # -- management -------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def describe(self, key: str) -> dict[str, Any]:
        path = self.path(key)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            packages = manifest["spec"]["packages"]
        except (OSError, ValueError, KeyError):
            packages = []
        return {"key": key, "path": str(path), "packages": packages, "size_bytes": _dir_size(path),
                "used_by": self.used_by(key), "complete": self.complete(key)}

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(key) for key in self.keys()]

    def remove(self, key: str) -> None:
        if not self.path(key).is_dir() or key.startswith("."):
            raise NotFound(f"No virtualenv with key {key!r}.")
        users = self.used_by(key)
        if users:
            raise Conflict(f"Virtualenv {key!r} is in use by {', '.join(users)}; terminate them first.")
        with self._locked(key):
            if self.used_by(key):
                raise Conflict(f"Virtualenv {key!r} is in use.")
            shutil.rmtree(self.path(key), ignore_errors=True)
        # The lock file stays: unlinking it while another process waits on it would split the lock.

    def prune(self) -> list[str]:
        """Remove every env no model uses; the keys removed."""
        removed = []
        for key in self.keys():
            if not self.used_by(key):
                with contextlib.suppress(Conflict, NotFound):
                    self.remove(key)
                    removed.append(key)
        return removed

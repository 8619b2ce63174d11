"""The user's pip configuration, read the way pip reads it, for `inherit_pip_config`.

Files in pip's order (later ones override earlier ones): the global files (each directory of
XDG_CONFIG_DIRS, then /etc/pip.conf), the user files (~/.pip/pip.conf, then the XDG config home),
the site file (sys.prefix/pip.conf), then PIP_CONFIG_FILE; within a file, [install] overrides
[global]. PIP_* environment variables override every file. A value may hold several URLs
separated by white space. `constraint` files are read for their pins: a machine that caps a package
for pip (a torch build that lies on its disk, say) caps it for the models' envs too.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

KEYS = ("index-url", "extra-index-url", "find-links", "trusted-host", "constraint")


@dataclass
class PipConfig:
    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    trusted_hosts: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # the pins of pip's constraint files


def config_files() -> list[Path]:
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull:
        return []  # pip's documented way to load no configuration file at all
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "pip" / "pip.conf" for d in xdg_dirs.split(os.pathsep) if d]
    files.append(Path("/etc/pip.conf"))
    home = Path.home()
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    files.append(Path(sys.prefix) / "pip.conf")
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(Path(os.environ["PIP_CONFIG_FILE"]))
    return files


def read() -> PipConfig:
    values: dict[str, str] = {}
    for path in config_files():
        parser = configparser.RawConfigParser()
        try:
            if not parser.read(path, encoding="utf-8"):
                continue
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue  # pip would complain about a broken file; we just do not inherit from it
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in KEYS:
                    if parser.has_option(section, key):
                        values[key] = parser.get(section, key)
    for key in KEYS:
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env is not None:
            values[key] = env
    index = values.get("index-url", "").split()
    return PipConfig(
        index_url=index[0] if index else None,
        extra_index_urls=values.get("extra-index-url", "").split(),
        find_links=values.get("find-links", "").split(),
        trusted_hosts=values.get("trusted-host", "").split(),
        constraints=[pin for path in values.get("constraint", "").split() for pin in constraint_pins(path)],
    )


def constraint_pins(path: str) -> list[str]:
    """The requirement lines of a pip constraint file; an unreadable file pins nothing (pip would fail)."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    pins = [line.split(" #", 1)[0].strip() for line in lines]
    return [pin for pin in pins if pin and not pin.startswith(("#", "-"))]

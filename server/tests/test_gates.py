"""The gates' and the request guard's rules, unit by unit (the end-to-end attacks are in tests/test_security.py)."""

import os

import pytest

from modelyard.errors import Forbidden, InvalidRequest
from modelyard.plugins import Plugins
from modelyard.types import VirtualEnvSettings
from modelyard_server.gates import Gates, PackageSources, package_location
from modelyard_server.guard import _host_name, _is_json, is_loopback


@pytest.mark.parametrize("text, location", [
    ("numpy>=2", None), ("#system_numpy#", None), ("demo[x]==1; python_version > '3'", None),
    ("evil @ https://h/e.whl", "https://h/e.whl"), ("evil @ file:///tmp/e", "file:///tmp/e"),
    ("/tmp/evil", "/tmp/evil"), ("./evil", "./evil"), ("https://h/e.tar.gz", "https://h/e.tar.gz"),
    ("git+https://h/r", "git+https://h/r"), ("evil-1.0-py3-none-any.whl", "evil-1.0-py3-none-any.whl"),
])
def test_package_location(text, location):
    assert package_location(text) == location


def test_package_sources_match_folders_and_url_prefixes(tmp_path):
    (tmp_path / "wheels").mkdir()
    sources = PackageSources([str(tmp_path / "wheels"), "https://pypi.example/simple/", "mirror.example"])
    assert sources.allows(str(tmp_path / "wheels"))
    assert sources.allows(f"file://{tmp_path}/wheels/a-1.0-py3-none-any.whl")
    assert not sources.allows(f"{tmp_path}/wheels/../elsewhere")  # resolved before it is compared
    assert not sources.allows(f"{tmp_path}/wheelsplus")
    assert sources.allows("https://pypi.example/simple") and sources.allows("https://PYPI.example/simple/pkg/")
    assert not sources.allows("https://pypi.example/simplex") and not sources.allows("http://pypi.example/simple")
    assert not sources.allows("https://pypi.example.evil/simple")
    assert sources.allows_host("pypi.example") and sources.allows_host("mirror.example")
    assert not sources.allows_host("evil.example")


def test_envs_gate():
    gates = Gates(allowed_envs=("MY_*",))
    gates.check_envs({"MY_SETTING": "1", "CUDA_VISIBLE_DEVICES": "0", "MODELYARD_LOAD_PLUGINS": "a"})
    for name in ("LD_PRELOAD", "PYTHONSTARTUP", "MODELYARD_API_KEY", "Path", "MODELYARD_ALLOWED_LAUNCHERS"):
        with pytest.raises(Forbidden, match="never accepted"):
            Gates(allowed_envs=("*",)).check_envs({name: "x"})
    with pytest.raises(Forbidden, match="add OTHER to MODELYARD_ALLOWED_ENVS"):
        gates.check_envs({"OTHER": "1"})
    with pytest.raises(InvalidRequest, match="NUL"):
        gates.check_envs({"MY_X": "a\x00b"})


def test_launcher_gate():
    plugins = Plugins(autoload=False)
    gates = Gates(allowed_launchers=("my_models.*",))
    gates.check_launcher("my_models.launcher", plugins)
    gates.check_launcher("my_models.sub:launcher", plugins)
    gates.check_launcher("unregistered_name", plugins)  # not an import path: the look-up answers for it
    with pytest.raises(Forbidden, match="Add 'other.launcher'"):
        gates.check_launcher("other.launcher", plugins)
    with pytest.raises(Forbidden):
        Gates().check_launcher("my_models.launcher", plugins)


def test_virtualenv_gate_counts_the_servers_pip_config(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST"):
        monkeypatch.delenv(name, raising=False)
    gates = Gates()
    gates.check_virtualenv(VirtualEnvSettings(packages=["numpy"], find_links=str(tmp_path)))
    with pytest.raises(Forbidden, match="index_url"):
        gates.check_virtualenv(VirtualEnvSettings(packages=["numpy"], index_url="https://evil.example/simple"))
    with pytest.raises(Forbidden, match="find_links"):
        gates.check_virtualenv(None, find_links=["/somewhere/else"])


@pytest.mark.parametrize("value, name", [
    ("localhost:9997", "localhost"), ("LOCALHOST.", "localhost"), ("[::1]:80", "::1"), ("::1", "::1"),
    ("127.0.0.1", "127.0.0.1"), ("example.com:x", "example.com:x"),
])
def test_host_name(value, name):
    assert _host_name(value) == name


def test_loopback_and_json_rules():
    assert is_loopback("127.0.0.9:1") and is_loopback("a.localhost") and is_loopback("[::1]:9")
    assert not is_loopback("0.0.0.0") and not is_loopback("localhost.evil.example")
    assert _is_json(b"application/json; charset=utf-8") and _is_json(b"application/merge-patch+json")
    assert not _is_json(b"text/plain") and not _is_json(None) and not _is_json(b"application/jsonx")

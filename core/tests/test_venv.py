"""Planning per-model virtualenvs: what gets installed, and what the env's key depends on."""

import os

import numpy
import pytest
from packaging.requirements import Requirement

from modelyard import pipconfig, venv
from modelyard.errors import InvalidRequest
from modelyard.types import VirtualEnvSettings


def settings(packages, **kw):
    return VirtualEnvSettings(packages=packages, inherit_pip_config=False, **kw)


def test_system_markers_pin_the_base_version_without_local_tag(monkeypatch):
    monkeypatch.setattr(venv, "installed_version", lambda name, paths=None: "2.4.1+cu130" if name == "torch" else None)
    assert venv.expand_system_markers(["#system_torch#", "x>=1"]) == ["torch==2.4.1", "x>=1"]
    with pytest.raises(InvalidRequest, match="#system_nothing# asks for the server environment's nothing"):
        venv.expand_system_markers(["#system_nothing#"])


def test_launch_packages_add_or_replace_same_named_ones():
    merged = venv.merge_packages(["demo-pkg==1.0", "Other_Pkg>=2", "#system_numpy#"], ["demo_pkg==2.0", "new"])
    assert merged == ["demo_pkg==2.0", "Other_Pkg>=2", "#system_numpy#", "new"]
    with pytest.raises(InvalidRequest, match="Invalid package requirement 'bad req!'"):
        venv.merge_packages(["bad req!"], [])


def test_satisfied_reads_metadata():
    assert venv.satisfied(Requirement(f"numpy=={numpy.__version__}"))
    assert not venv.satisfied(Requirement("numpy<1"))
    assert not venv.satisfied(Requirement("modelyard-not-installed-anywhere"))
    assert venv.satisfied(Requirement('modelyard-not-installed-anywhere; python_version < "3"'))


def test_no_env_when_the_base_has_everything():
    assert venv.plan(settings([])) is None
    assert venv.plan(settings(["#system_numpy#", "pluggy", "packaging>=20"])) is None
    assert venv.plan(settings(["demo-pkg==1.0"]), enable=False) is None


def test_plan_keeps_only_what_is_missing_and_keys_by_content():
    first = venv.plan(settings(["demo-pkg==1.0", "#system_numpy#", "pluggy"], find_links="/w"))
    assert first.packages == ("demo-pkg==1.0",)
    assert first.find_links == ("/w",)
    same = venv.plan(settings(["pluggy", "demo-pkg==1.0"], find_links=["/w"]))
    assert same.key == first.key
    assert venv.plan(settings(["demo-pkg==2.0"], find_links="/w")).key != first.key
    assert venv.plan(settings(["demo-pkg==1.0"], find_links="/other")).key != first.key
    with_requirements = venv.plan(settings([]), requirements=["demo-lib>=3"], extra_find_links=["/l"])
    assert with_requirements.packages == ("demo-lib>=3",) and with_requirements.find_links == ("/l",)
    replaced = venv.plan(settings(["demo-pkg==1.0"]), extra_packages=["demo-pkg==2.0"])
    assert replaced.packages == ("demo-pkg==2.0",)


def test_pip_config_files_and_environment(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("PIP_") or key.startswith("XDG_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc"))
    (tmp_path / "etc" / "pip").mkdir(parents=True)
    (tmp_path / "etc" / "pip" / "pip.conf").write_text(
        "[global]\nindex-url = https://global.invalid/simple\nfind-links = /global/wheels\n")
    (tmp_path / ".config" / "pip").mkdir(parents=True)
    (tmp_path / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nextra-index-url =\n    https://a.invalid/simple\n    https://b.invalid/simple\n"
        "[install]\ntrusted-host = a.invalid b.invalid\n")
    monkeypatch.setattr(pipconfig, "config_files", lambda: [
        tmp_path / "etc" / "pip" / "pip.conf", tmp_path / ".config" / "pip" / "pip.conf"])
    config = pipconfig.read()
    assert config.index_url == "https://global.invalid/simple"
    assert config.extra_index_urls == ["https://a.invalid/simple", "https://b.invalid/simple"]
    assert config.find_links == ["/global/wheels"]
    assert config.trusted_hosts == ["a.invalid", "b.invalid"]
    monkeypatch.setenv("PIP_FIND_LINKS", "/env/one /env/two")
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.invalid/simple")
    config = pipconfig.read()
    assert config.find_links == ["/env/one", "/env/two"] and config.index_url == "https://env.invalid/simple"


def test_pip_constraint_files_cap_the_models_envs(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    caps = tmp_path / "constraints.txt"
    caps.write_text("# what lies on this disk\ndemo-torch<=2.1  # the CPU build\n\n-c other.txt\ndemo-vision<=0.2\n")
    conf = tmp_path / "pip.conf"
    conf.write_text(f"[global]\nconstraint = {caps}\n")
    monkeypatch.setattr(pipconfig, "config_files", lambda: [conf])
    assert pipconfig.read().constraints == ["demo-torch<=2.1", "demo-vision<=0.2"]
    inherited = venv.plan(VirtualEnvSettings(packages=["demo-pkg==1.0"], inherit_pip_config=True))
    assert inherited.constraints == ("demo-torch<=2.1", "demo-vision<=0.2")
    assert venv.plan(settings(["demo-pkg==1.0"])).constraints == ()
    monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "missing.txt"))
    assert pipconfig.read().constraints == []  # pip would fail on it; the env is not capped by it


def test_pip_config_file_list_follows_pip(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_DIRS", "/a:/b")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "extra.conf"))
    files = [str(p) for p in pipconfig.config_files()]
    assert files[:3] == ["/a/pip/pip.conf", "/b/pip/pip.conf", "/etc/pip.conf"]
    assert files[3:5] == [f"{tmp_path}/.pip/pip.conf", f"{tmp_path}/.config/pip/pip.conf"]
    assert files[-1] == str(tmp_path / "extra.conf")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert pipconfig.config_files() == []


def test_a_launch_time_system_marker_replaces_a_pinned_package():
    assert venv.merge_packages(["numpy==1.0", "x"], ["#system_numpy#"]) == ["#system_numpy#", "x"]

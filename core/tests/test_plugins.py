"""The plugin manager: in-process plugins, failure isolation, launcher look-up."""

import pytest

from modelyard import hookimpl
from modelyard.engines import Engine
from modelyard.errors import InvalidRequest, NotFound
from modelyard.plugins import PluginRecord, Plugins, import_object


class GoodPlugin:
    @hookimpl
    def register_flexible_launchers(self, register):
        register("good", "pkg.impl:launcher", requirements=["demo-pkg>=1"])

    @hookimpl
    def register_engines(self, register):
        register(Engine(name="fake-engine", model_types=("LLM",), impl="pkg.engine:Impl", formats=("pytorch",)))


class RaisingPlugin:
    @hookimpl
    def register_flexible_launchers(self, register):
        register("half", "pkg.half:launcher")
        raise RuntimeError("hook exploded")


@pytest.fixture
def plugins():
    return Plugins(autoload=False)


def test_in_process_plugins_register_and_unregister(plugins):
    plugins.register(GoodPlugin(), "good-plugin")
    assert plugins.launcher("good").import_path == "pkg.impl:launcher"
    assert plugins.launcher("good").requirements == ("demo-pkg>=1",)
    assert plugins.launcher("good").plugin == "good-plugin"
    assert plugins.engines["fake-engine"].plugin == "good-plugin"
    assert plugins.records["good-plugin"].registered == {"flexible_launchers": ["good"], "engines": ["fake-engine"]}
    plugins.unregister("good-plugin")
    assert "good" not in plugins.launchers and "good-plugin" not in plugins.records


class AliasingPlugin:
    @hookimpl
    def register_flexible_launchers(self, register):
        register("pipe", "pkg.pipe:launcher", aliases=["xinference.model.flexible.launchers.pipe"])


def test_a_launcher_alias_names_the_same_launcher(plugins):
    plugins.register(AliasingPlugin(), "aliasing")
    assert plugins.launcher("xinference.model.flexible.launchers.pipe") is plugins.launcher("pipe")
    assert plugins.records["aliasing"].registered == {
        "flexible_launchers": ["pipe", "xinference.model.flexible.launchers.pipe"]}


def test_a_raising_hook_is_recorded_and_the_rest_still_load(plugins):
    plugins.register(RaisingPlugin(), "raising")
    plugins.register(GoodPlugin(), "good-plugin")
    assert plugins.records["raising"].error == "register_flexible_launchers raised RuntimeError: hook exploded"
    assert "good" in plugins.launchers
    assert plugins.model_types  # the built-ins are untouched


def test_a_broken_plugin_answers_its_own_error(plugins):
    plugins.records["yolo"] = PluginRecord(name="yolo", distribution="modelyard-flexible-yolo", version="0.1",
                                           error="ModuleNotFoundError: No module named 'ultralytics'")
    with pytest.raises(InvalidRequest, match="plugin 'yolo' .*No module named 'ultralytics'"):
        plugins.launcher("yolo")
    with pytest.raises(NotFound, match="No flexible launcher named 'nothing'"):
        plugins.launcher("nothing")


def test_import_object_accepts_both_path_styles():
    assert import_object("os.path:join") is import_object("os.path.join")
    assert import_object("json:decoder.JSONDecoder").__name__ == "JSONDecoder"
    with pytest.raises(ImportError):
        import_object("justaname")
    with pytest.raises(ModuleNotFoundError):
        import_object("no_such_module_anywhere.f")

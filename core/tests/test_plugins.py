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
    assert plugins.engine("LLM", "fake-engine").plugin == "good-plugin"
    assert plugins.records["good-plugin"].registered == {"flexible_launchers": ["good"],
                                                         "engines": ["fake-engine (LLM)"]}
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


def test_a_raising_hook_leaves_nothing_registered_and_the_rest_still_load(plugins):
    plugins.register(RaisingPlugin(), "raising")
    plugins.register(GoodPlugin(), "good-plugin")
    problems = plugins.records["raising"].as_dict()["problems"]
    assert problems == ["register_flexible_launchers raised RuntimeError: hook exploded; "
                        "none of its 1 registration(s) count"]
    assert "half" not in plugins.launchers  # registered before the raise: it does not count
    assert plugins.records["raising"].registered == {}
    assert "good" in plugins.launchers
    assert plugins.model_types  # the built-ins are untouched


class VllmBothTypes:
    @hookimpl
    def register_engines(self, register):
        register(Engine(name="vllm", model_types=("LLM",), impl="pkg.vllm_llm:VllmLLM"))
        register(Engine(name="vllm", model_types=("embedding",), impl="pkg.vllm_embed:VllmEmbedding"))


class SecondVllmForLLM:
    @hookimpl
    def register_engines(self, register):
        register(Engine(name="vLLM", model_types=("LLM",), impl="other.pkg:Impl"))
        register(Engine(name="other", model_types=("rerank",), impl="other.pkg:Rerank"))


def test_engine_names_are_per_model_type(plugins):
    plugins.register(VllmBothTypes(), "vllm-plugin")
    assert plugins.engine("LLM", "vllm").impl == "pkg.vllm_llm:VllmLLM"
    assert plugins.engine("embedding", "vllm").impl == "pkg.vllm_embed:VllmEmbedding"
    assert plugins.engine("LLM", "vLLM") is plugins.engine("LLM", "vllm")  # Xinference's spelling
    assert plugins.engine("rerank", "vllm") is None
    assert [e.impl for e in plugins.engines_for("embedding")] == ["pkg.vllm_embed:VllmEmbedding"]


def test_a_clash_keeps_the_first_and_is_shown_on_both(plugins):
    plugins.register(VllmBothTypes(), "first")
    plugins.register(SecondVllmForLLM(), "second")
    assert plugins.engine("LLM", "vllm").plugin == "first"
    assert plugins.engine("rerank", "other").plugin == "second"  # the rest of the second plugin counts
    for name in ("first", "second"):
        (problem,) = plugins.records[name].as_dict()["problems"]
        assert "engine 'vLLM for LLM' is registered by both 'first' and 'second'; 'first'" in problem
    plugins.unregister("first")
    assert plugins.engine("LLM", "vllm").plugin == "second" and plugins.records["second"].as_dict()["problems"] == []


class LauncherClash:
    @hookimpl
    def register_flexible_launchers(self, register):
        register("good", "elsewhere:launcher")


def test_a_launcher_name_taken_is_a_clash_not_a_replacement(plugins):
    plugins.register(GoodPlugin(), "good-plugin")
    plugins.register(LauncherClash(), "late")
    assert plugins.launcher("good").import_path == "pkg.impl:launcher"
    assert "flexible launcher 'good' is registered by both" in plugins.records["late"].as_dict()["problems"][0]


class Misspelled:
    @hookimpl
    def register_engine(self, register):  # the hook is register_engines
        register(Engine(name="never", model_types=("LLM",), impl="x:y"))

    @hookimpl
    def register_flexible_launchers(self, register):
        register("spelled-right", "x:launcher")


def test_a_misspelled_hook_is_an_error_shown(plugins):
    plugins.register(Misspelled(), "misspelled")
    (problem,) = plugins.records["misspelled"].as_dict()["problems"]
    assert "unknown hook 'register_engine'" in problem and "did you mean 'register_engines'?" in problem
    assert plugins.engine("LLM", "never") is None
    assert "spelled-right" in plugins.launchers


class FromTheFuture:
    modelyard_contract = 99

    @hookimpl
    def register_flexible_launchers(self, register):
        register("future", "x:launcher")


def test_the_contract_version_is_shown_and_a_newer_one_is_a_problem(plugins):
    from modelyard.hookspecs import CONTRACT_VERSION

    plugins.register(FromTheFuture(), "future")
    row = next(r for r in plugins.describe() if r["name"] == "future")
    assert row["contract"] == 99
    assert f"written for plugin contract 99; this modelyard has {CONTRACT_VERSION}" in row["problems"][0]
    builtin = next(r for r in plugins.describe() if r["name"] == "modelyard.types.builtin")
    assert builtin["contract"] == CONTRACT_VERSION and builtin["problems"] == []


def test_the_trace_switch_logs_each_plugin(monkeypatch, capfd):
    monkeypatch.setenv("MODELYARD_TRACE_PLUGINS", "1")
    traced = Plugins(autoload=True)
    traced.register(RaisingPlugin(), "raising")
    err = capfd.readouterr().err
    assert "modelyard plugins:" in err
    assert "modelyard-engine-transformers/transformers 0.1.0 imported modelyard_engine_transformers.plugin in" in err
    assert "raising: register_flexible_launchers raised RuntimeError: hook exploded" in err


def test_a_name_not_registered_names_the_plugins_that_failed(plugins):
    plugins.records["x/yolo"] = PluginRecord(name="yolo", distribution="modelyard-flexible-yolo", version="0.1",
                                             error="ModuleNotFoundError: No module named 'ultralytics'")
    with pytest.raises(NotFound, match="No flexible launcher named 'pipe'.*failed to load: yolo "
                                       r"\(modelyard-flexible-yolo\): ModuleNotFoundError"):
        plugins.launcher("pipe")


def test_a_broken_plugin_answers_its_own_error(plugins):
    plugins.records["x/yolo"] = PluginRecord(name="yolo", distribution="modelyard-flexible-yolo", version="0.1",
                                           error="ModuleNotFoundError: No module named 'ultralytics'")
    with pytest.raises(InvalidRequest, match="plugin 'yolo' .*No module named 'ultralytics'"):
        plugins.launcher("yolo")
    with pytest.raises(NotFound, match="No flexible launcher named 'nothing'"):
        plugins.launcher("nothing")


def test_xinferences_launcher_names_are_names_and_a_missing_one_says_what_to_install():
    bare = Plugins(autoload=False)
    bare.register(AliasingPlugin(), "aliasing")
    assert not bare.names_import_path("xinference.model.flexible.launchers.yolo")
    assert bare.names_import_path("my_package.launchers.yolo")
    with pytest.raises(NotFound, match=r"'xinference.model.flexible.launchers.yolo' is registered \(installed: pipe\).*"
                                       r"pip install ./plugins/flexible-yolo"):
        bare.launcher("xinference.model.flexible.launchers.yolo")


def test_import_object_accepts_both_path_styles():
    assert import_object("os.path:join") is import_object("os.path.join")
    assert import_object("json:decoder.JSONDecoder").__name__ == "JSONDecoder"
    with pytest.raises(ImportError):
        import_object("justaname")
    with pytest.raises(ModuleNotFoundError):
        import_object("no_such_module_anywhere.f")


class TryLast:
    @hookimpl(trylast=True)
    def register_model_types(self, register):
        from modelyard.types.llm import LLM

        register(LLM)

    @hookimpl
    def register_engines(self, register):
        register(Engine(name="lower", model_types="llm", impl="x:y", formats="pytorch"))
        register(Engine(name="bad-type", model_types=("nope",), impl="x:y"))
        register(Engine(name="flaky", model_types=("LLM",), impl="x:y", hardware=lambda: 1 / 0))


def test_load_order_not_pluggys_order_decides_who_keeps_a_name(plugins):
    plugins.register(TryLast(), "trylast")
    problems = plugins.records["trylast"].as_dict()["problems"]
    assert any("model type 'LLM' is registered by both 'modelyard.types.builtin' and 'trylast'" in p for p in problems)
    assert plugins.engine("LLM", "lower").formats == ("pytorch",)  # type named in any case; a string is one item
    assert any("Unknown model type 'nope'" in p for p in problems)


def test_a_plugin_rule_that_raises_is_a_reason_not_a_crash(plugins):
    from modelyard.types import ModelSpec

    plugins.register(TryLast(), "trylast")
    reason = plugins.engine("LLM", "flaky").why_not(None, ModelSpec(model_format="pytorch"))
    assert reason.startswith("its hardware rule raised ZeroDivisionError")


def test_a_broken_plugin_is_found_whatever_the_case_of_the_name(plugins):
    plugins.records["x/transformers"] = PluginRecord(name="transformers", error="ImportError: no torch")
    assert plugins.broken("Transformers") is plugins.records["x/transformers"]


def test_every_hookspec_has_a_test_that_implements_it():
    """datasette's habit: a hook nobody exercises is a hook nobody knows still works."""
    from pathlib import Path

    from modelyard.plugins import HOOKS

    repo = Path(__file__).resolve().parents[2]
    sources = "\n".join(p.read_text() for folder in ("core/tests", "tests", "server/tests")
                        for p in (repo / folder).rglob("*.py"))
    missing = [hook for hook in sorted(HOOKS) if f"def {hook}(" not in sources]
    assert not missing, f"hookspecs without a test plugin implementing them: {missing}"


class Commands:
    @hookimpl
    def register_commands(self, cli):
        import click

        @cli.command()
        @click.argument("name")
        def hello(name):
            """Say hello."""
            click.echo(f"hello {name}")


class RaisingCommands:
    @hookimpl
    def register_commands(self, cli):
        raise RuntimeError("no commands today")


def test_plugins_add_cli_commands_and_one_that_raises_is_recorded(plugins):
    import click
    from click.testing import CliRunner

    plugins.register(Commands(), "commands")
    plugins.register(RaisingCommands(), "raising-commands")

    @click.group()
    def cli():
        pass

    plugins.register_commands(cli)
    assert CliRunner().invoke(cli, ["hello", "you"]).output == "hello you\n"
    assert plugins.records["raising-commands"].problems == ["register_commands raised RuntimeError: no commands today"]

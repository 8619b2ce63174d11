"""The registry: validation, name rules, clashes, persistence in SQLite."""

import json

import pytest

from modelyard import hookimpl
from modelyard.errors import Conflict, InvalidRequest, NotFound
from modelyard.plugins import Plugins
from modelyard.registry import Registry
from modelyard.store import Store


def flexible(name="scorer", **extra):
    return json.dumps({"model_name": name, "launcher": "pkg.mod.launcher", **extra})


class Catalogue:
    @hookimpl
    def register_models(self, register):
        register("flexible", {"model_name": "builtin-scorer", "launcher": "pkg.builtin.launcher"})


@pytest.fixture
def plugins():
    p = Plugins(autoload=False)
    p.register(Catalogue(), "test-catalogue")
    yield p
    p.unregister("test-catalogue")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "modelyard.db")
    yield s
    s.close()


def test_register_get_list_unregister(plugins, store):
    registry = Registry(plugins, store)
    entry = registry.register("flexible", flexible(), persist=False)
    assert entry.registration.model_name == "scorer" and not entry.builtin
    assert registry.get("flexible", "scorer").registration.launcher == "pkg.mod.launcher"
    listed = [(e.registration.model_name, e.builtin) for e in registry.list("flexible")]
    assert listed == [("builtin-scorer", True), ("scorer", False)]
    registry.unregister("flexible", "scorer")
    with pytest.raises(NotFound):
        registry.get("flexible", "scorer")
    with pytest.raises(NotFound):
        registry.unregister("flexible", "scorer")


def test_builtins_cannot_be_shadowed_or_removed(plugins, store):
    registry = Registry(plugins, store)
    with pytest.raises(Conflict, match="taken by a builtin"):
        registry.register("flexible", flexible("builtin-scorer"), persist=False)
    with pytest.raises(InvalidRequest, match="builtin"):
        registry.unregister("flexible", "builtin-scorer")
    assert registry.get("flexible", "builtin-scorer").builtin


@pytest.mark.parametrize("name", ["a", "Model_1-x", "7b"])
def test_valid_names(plugins, name):
    assert Registry(plugins, None).register("flexible", flexible(name), persist=False)


@pytest.mark.parametrize("name", ["_lead", "-lead", "a.b", "a b", "a/b", "é", ""])
def test_invalid_names(plugins, name):
    with pytest.raises(InvalidRequest, match="model_name"):
        Registry(plugins, None).register("flexible", flexible(name), persist=False)


def test_persisted_registrations_reload_and_others_do_not(plugins, tmp_path):
    path = tmp_path / "db.sqlite"
    first = Registry(plugins, Store(path))
    first.register("flexible", flexible("kept", launcher_args='{"x": 1}'), persist=True)
    first.register("flexible", flexible("gone"), persist=False)
    first.store.close()
    second = Registry(plugins, Store(path))
    kept = second.get("flexible", "kept")
    assert kept.persisted and kept.registration.launcher_kwargs() == {"x": 1}
    with pytest.raises(NotFound):
        second.get("flexible", "gone")
    second.unregister("flexible", "kept")
    second.store.close()
    with pytest.raises(NotFound):
        Registry(plugins, Store(path)).get("flexible", "kept")


def test_a_corrupt_persisted_row_is_skipped(plugins, tmp_path):
    path = tmp_path / "db.sqlite"
    store = Store(path)
    store.execute("INSERT INTO registrations (model_type, model_name, spec, created_at) VALUES (?, ?, ?, ?)",
                  ("flexible", "broken", "{not json", 0.0))
    store.execute("INSERT INTO registrations (model_type, model_name, spec, created_at) VALUES (?, ?, ?, ?)",
                  ("nonsense-type", "x", "{}", 0.0))
    Registry(plugins, store).register("flexible", flexible("fine"), persist=True)
    registry = Registry(plugins, store)
    assert [e.registration.model_name for e in registry.list("flexible")] == ["builtin-scorer", "fine"]


def test_model_uri_must_exist_for_non_flexible_types(plugins, tmp_path):
    registry = Registry(plugins, None)
    spec = {"model_name": "emb", "model_specs": [{"model_format": "pytorch", "model_uri": str(tmp_path / "no")}]}
    with pytest.raises(InvalidRequest, match="does not exist"):
        registry.register("embedding", spec, persist=False)
    spec["model_specs"][0]["model_uri"] = f"file://{tmp_path}"
    assert registry.register("embedding", spec, persist=False)
    spec = {"model_name": "img", "model_uri": str(tmp_path / "no-image")}
    with pytest.raises(InvalidRequest, match="no-image"):
        registry.register("image", spec, persist=False)
    # remote URIs are not checked here
    spec = {"model_name": "img2", "model_uri": "s3://bucket/model"}
    assert registry.register("image", spec, persist=False)


def test_same_name_in_two_types_is_allowed(plugins, tmp_path):
    registry = Registry(plugins, None)
    registry.register("flexible", flexible("shared"), persist=False)
    registry.register("image", {"model_name": "shared", "model_uri": str(tmp_path)}, persist=False)
    assert registry.get("image", "shared").model_type == "image"

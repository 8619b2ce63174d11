"""The real Xinference client (PyPI xinference-client), unchanged, against a modelyard server."""

from xinference_client import RESTfulClient

from helpers import FLEXIBLE_FIXTURES

EXAMPLE_JSON = (FLEXIBLE_FIXTURES / "my_flexible_model.json").read_text()


def test_xinference_client_drives_the_flexible_example(server):
    client = RESTfulClient(server.url)
    client.register_model(model_type="flexible", model=EXAMPLE_JSON, persist=False)
    try:
        registrations = client.list_model_registrations(model_type="flexible")
        assert any(r["model_name"] == "my-flexible-model" and not r["is_builtin"] for r in registrations)
        assert client.get_model_registration("flexible", "my-flexible-model")["model_name"] == "my-flexible-model"
        uid = client.launch_model(model_name="my-flexible-model", model_type="flexible")
        assert uid == "my-flexible-model"
        models = client.list_models()
        assert models[uid]["model_type"] == "flexible" and models[uid]["status"] == "READY"
        assert client.describe_model(uid)["model_name"] == "my-flexible-model"
        model = client.get_model(uid)
        assert type(model).__name__ == "RESTfulFlexibleModelHandle"
        assert model.infer("I feel nice and am happy today") == {"score": 2}
        assert client.get_launch_model_progress(uid)["progress"] == 1.0
        client.terminate_model(uid)
        assert uid not in client.list_models()
    finally:
        client.unregister_model(model_type="flexible", model_name="my-flexible-model")
    assert all(r["model_name"] != "my-flexible-model" for r in client.list_model_registrations(model_type="flexible"))


def test_xinference_client_sees_modelyard_errors(server):
    client = RESTfulClient(server.url)
    try:
        client.get_model("no-such-uid")
    except RuntimeError as exc:
        assert "No model with uid 'no-such-uid'" in str(exc)
    else:
        raise AssertionError("expected an error")

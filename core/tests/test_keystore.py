"""API keys in the state: hashed, scoped, limited, expiring, revocable, and seen across processes."""

import time

import pytest

from modelyard.errors import InvalidRequest, NotFound
from modelyard.keys import KeyStore, hash_key, parse_duration
from modelyard.store import Store


@pytest.fixture
def keys(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    yield KeyStore(store)
    store.close()


def test_a_key_is_stored_as_its_hash_and_authenticates(keys):
    assert not keys.enabled
    key, value = keys.create(["inference"], name="app")
    assert value.startswith("my-") and len(value) >= 40 and key.prefix == value[:10]
    assert keys.enabled
    assert keys.authenticate(value).id == key.id
    assert keys.authenticate(value + "x") is None
    (stored,) = keys.store.execute("SELECT hash FROM api_keys")
    assert stored[0] == hash_key(value) and value not in stored[0]


def test_scopes_limits_and_admin(keys):
    inference, _ = keys.create(["inference"], models=["chat-*", "embedder"])
    assert inference.allows("inference") and not inference.allows("models:read")
    assert inference.may_use("chat-1", "qwen") and inference.may_use("x", "embedder")
    assert not inference.may_use("other", "qwen")
    admin, _ = keys.create(["admin"])
    assert admin.allows("models:register") and admin.may_use("anything")
    with pytest.raises(InvalidRequest, match="Unknown scope 'root'"):
        keys.create(["root"])
    with pytest.raises(InvalidRequest, match="at least one scope"):
        keys.create([])


def test_expiry_and_revocation(keys):
    _, short = keys.create(["inference"], expires_in=0.2)
    assert keys.authenticate(short) is not None
    time.sleep(0.3)
    assert keys.authenticate(short) is None
    key, value = keys.create(["inference"])
    assert keys.revoke(key.id).revoked_at is not None
    assert keys.authenticate(value) is None
    assert keys.enabled  # revoking keys never turns them off
    with pytest.raises(NotFound):
        keys.revoke("nope")


def test_another_process_changes_are_seen_on_refresh(tmp_path, keys):
    other = KeyStore(Store(tmp_path / "db.sqlite"))  # a second connection: the CLI on the state folder
    key, value = other.create(["models:read"])
    keys.refresh()
    assert keys.authenticate(value).id == key.id
    other.revoke(key.id)
    assert keys.authenticate(value) is not None  # not refreshed yet: the server refreshes on every request
    keys.refresh()
    assert keys.authenticate(value) is None
    other.store.close()


def test_last_use_is_written_on_flush(keys):
    key, value = keys.create(["inference"])
    keys.authenticate(value)
    assert keys.store.execute("SELECT last_used_at FROM api_keys")[0][0] is None  # the request path writes nothing
    keys.flush_uses()
    assert keys.store.execute("SELECT last_used_at FROM api_keys")[0][0] == pytest.approx(time.time(), abs=5)


def test_the_operators_admin_key(keys):
    value = "my-operator-chosen-admin-key"
    first = keys.ensure_admin(value)
    assert first.admin and keys.ensure_admin(value).id == first.id
    keys.revoke(first.id)
    again = keys.ensure_admin(value)  # the value set at start is the admin key again
    assert again.id != first.id and keys.authenticate(value).id == again.id
    with pytest.raises(SystemExit, match="at least 16 characters"):
        keys.ensure_admin("short")


@pytest.mark.parametrize("text, seconds", [("90", 90), (90, 90), ("15m", 900), ("12h", 43200), ("30d", 2592000),
                                           ("2w", 1209600), ("1.5s", 1.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1d", "0", "3y"])
def test_bad_durations(text):
    with pytest.raises(InvalidRequest):
        parse_duration(text)

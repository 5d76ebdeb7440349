"""The BaseCache contract through the fence, over every wrapped backend (sync and async)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from django.core.cache import caches

from django_fence.envelope import Envelope
from tests.conftest import backing_config, fenced_caches

pytestmark = pytest.mark.timeout(60)


def test_get_returns_plain_value_written_by_set(fenced: Any) -> None:
    fenced.set("k", {"a": 1})
    assert fenced.get("k") == {"a": 1}
    assert caches["backing"].get("k") == {"a": 1}


def test_get_returns_plain_value_written_by_get_or_set(fenced: Any) -> None:
    assert fenced.get_or_set("k", lambda: [1, 2], 30) == [1, 2]
    assert fenced.get("k") == [1, 2]
    assert isinstance(caches["backing"].get("k"), Envelope)


def test_value_written_through_bare_alias_reads_through_fence(fenced: Any) -> None:
    caches["backing"].set("k", "plain")
    assert fenced.get("k") == "plain"
    assert fenced.get_or_set("k", lambda: "computed", 30) == "plain"


def test_get_default_and_missing(fenced: Any) -> None:
    assert fenced.get("nope") is None
    assert fenced.get("nope", "dflt") == "dflt"
    assert fenced.has_key("nope") is False


def test_add_delete_has_key(fenced: Any) -> None:
    assert fenced.add("k", 1) is True
    assert fenced.add("k", 2) is False
    assert fenced.get("k") == 1
    assert fenced.has_key("k") is True
    assert fenced.delete("k") is True
    assert fenced.has_key("k") is False
    assert fenced.delete("k") is False


def test_get_many_set_many_delete_many(fenced: Any) -> None:
    assert fenced.set_many({"a": 1, "b": 2, "c": 3}) == []
    fenced.get_or_set("d", lambda: 4, 30)
    assert fenced.get_many(["a", "b", "d", "zz"]) == {"a": 1, "b": 2, "d": 4}
    fenced.delete_many(["a", "b"])
    assert fenced.get_many(["a", "b", "c"]) == {"c": 3}


def test_incr_decr_act_on_plain_integers(fenced: Any) -> None:
    fenced.set("n", 10)
    assert fenced.incr("n") == 11
    assert fenced.incr("n", 5) == 16
    assert fenced.decr("n", 6) == 10
    assert caches["backing"].get("n") == 10
    with pytest.raises(ValueError):
        fenced.incr("missing")


def test_touch_and_timeouts(fenced: Any) -> None:
    fenced.set("k", "v", 1)
    assert fenced.touch("k", 30) is True
    assert fenced.touch("missing", 30) is False
    time.sleep(1.5)
    assert fenced.get("k") == "v"
    fenced.set("gone", "v", 0)
    assert fenced.get("gone") is None


def test_get_or_set_with_none_value_and_non_callable(fenced: Any) -> None:
    assert fenced.get_or_set("none", lambda: None, 30) is None
    assert fenced.get_or_set("none", lambda: "other", 30) is None  # None was stored, as in Django
    assert fenced.get_or_set("plain", "a value", 30) == "a value"


def test_get_or_set_timeout_zero_stores_nothing(fenced: Any) -> None:
    assert fenced.get_or_set("k", lambda: 1, 0) == 1
    assert fenced.has_key("k") is False


def test_clear(fenced: Any) -> None:
    fenced.set("k", 1)
    fenced.clear()
    assert fenced.get("k") is None


def test_versions(fenced: Any) -> None:
    fenced.set("k", "v1", version=1)
    fenced.set("k", "v2", version=2)
    assert fenced.get("k", version=1) == "v1"
    assert fenced.get("k", version=2) == "v2"
    assert fenced.get_or_set("g", lambda: "g2", 30, version=2) == "g2"
    assert fenced.get("g", version=1) is None
    assert fenced.incr_version("k", version=2) == 3
    assert fenced.get("k", version=3) == "v2"


def test_async_methods(fenced: Any) -> None:
    async def scenario() -> dict[str, Any]:
        await fenced.aset("a", 1)
        await fenced.aset_many({"b": 2, "c": 3})
        out = {
            "get": await fenced.aget("a"),
            "add": await fenced.aadd("a", 9),
            "many": await fenced.aget_many(["a", "b", "c"]),
            "incr": await fenced.aincr("a", 2),
            "decr": await fenced.adecr("a"),
            "has": await fenced.ahas_key("b"),
            "touch": await fenced.atouch("b", 30),
            "gos_sync": await fenced.aget_or_set("s", lambda: "sync", 30),
        }

        async def produce() -> str:
            await asyncio.sleep(0.01)
            return "async"

        out["gos_async"] = await fenced.aget_or_set("x", produce, 30)
        out["gos_async_again"] = await fenced.aget("x")
        out["delete"] = await fenced.adelete("a")
        await fenced.adelete_many(["b"])
        out["after"] = await fenced.aget_many(["a", "b", "c"])
        await fenced.aclear()
        out["cleared"] = await fenced.aget("c")
        await fenced.aclose()
        return out

    assert asyncio.run(scenario()) == {
        "get": 1, "add": False, "many": {"a": 1, "b": 2, "c": 3}, "incr": 3, "decr": 2, "has": True,
        "touch": True, "gos_sync": "sync", "gos_async": "async", "gos_async_again": "async",
        "delete": True, "after": {"c": 3}, "cleared": None,
    }  # fmt: skip


@pytest.mark.parametrize("length", [240, 245, 250, 300])
def test_long_keys_work_through_the_fence(fenced: Any, length: int) -> None:
    key = "k" * length
    assert fenced.get_or_set(key, lambda: "long", 30) == "long"
    assert fenced.get(key) == "long"
    fenced.set(key, "set")
    assert fenced.get(key) == "set"
    assert fenced.mark_stale(key) is True
    assert fenced.delete(key) is True


def test_keys_with_spaces_and_control_characters(fenced: Any) -> None:
    for key in ["with space", "tab\tkey", "nl\nkey", "ünïcödé"]:
        assert fenced.get_or_set(key, lambda k=key: k.upper(), 30) == key.upper()
        assert fenced.get(key) == key.upper()


def test_key_prefix_version_and_key_function_of_the_wrapped_alias(backing: tuple[str, str], settings: Any) -> None:
    kind, location = backing
    config = backing_config(kind, location)
    config.update({"KEY_PREFIX": "pre", "VERSION": 3, "KEY_FUNCTION": "tests.test_contract.reversed_key"})
    settings.CACHES = fenced_caches(config)
    fenced, bare = caches["default"], caches["backing"]
    fenced.get_or_set("abc", lambda: "value", 30)
    assert bare.get("abc") is not None  # the wrapped alias finds it under its own scheme
    assert bare.make_key("abc") == "cba:3:pre"
    fenced.set("p", 1)
    assert bare.get("p", version=3) == 1
    assert bare.get("p", version=1) is None
    fenced.clear()


def test_key_prefix_of_the_fenced_alias_namespaces_its_keys(settings: Any) -> None:
    config = fenced_caches(backing_config("locmem", "fence-namespaced"))
    config["default"]["KEY_PREFIX"] = "ns"
    settings.CACHES = config
    caches["default"].set("k", "fenced")
    caches["backing"].set("k", "bare")
    assert caches["default"].get("k") == "fenced"
    assert caches["backing"].get("k") == "bare"


def reversed_key(key: str, key_prefix: str, version: int) -> str:
    return f"{key[::-1]}:{version}:{key_prefix}"


def test_close_is_delegated(fenced: Any) -> None:
    fenced.set("k", 1)
    fenced.close()
    assert fenced.get("k") == 1


def test_incr_version_starts_from_the_wrapped_alias_version(backing: tuple[str, str], settings: Any) -> None:
    kind, location = backing
    config = backing_config(kind, location)
    config["VERSION"] = 3
    settings.CACHES = fenced_caches(config)
    fenced, bare = caches["default"], caches["backing"]
    fenced.set("iv", "value")
    assert bare.get("iv") == "value"
    assert fenced.incr_version("iv") == 4
    assert bare.get("iv", version=4) == "value"
    assert asyncio.run(fenced.adecr_version("iv", version=4)) == 3
    fenced.clear()


def test_fenced_alias_without_timeout_uses_the_wrapped_alias_timeout(settings: Any) -> None:
    config = fenced_caches({**backing_config("locmem", "fence-timeout"), "TIMEOUT": None})
    del config["default"]["TIMEOUT"]
    settings.CACHES = config
    caches["default"].set("forever", 1)
    assert caches["backing"]._expire_info[caches["backing"].make_key("forever")] is None

"""{% fencedcache %} beside Django's {% cache %}, and @fenced."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import time
import uuid
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.utils import make_template_fragment_key
from django.template import Context, Template, TemplateSyntaxError

from django_fence import fenced
from django_fence.decorators import Fenced
from tests.test_stampede import in_threads
from tests.workers import CONTEXT

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fence_caches(fenced_on: dict[str, Any]) -> None:
    """The fence over every kind of server, and a plain LocMem for Django's own tag."""


class Slow:
    """A context value whose rendering counts and takes 200 ms."""

    def __init__(self) -> None:
        self.renders = 0

    def __str__(self) -> str:
        self.renders += 1
        time.sleep(0.2)
        return f"expensive {self.renders}"


# -- {% fencedcache %} ---------------------------------------------------------------------------------
def test_fragment_has_the_key_and_output_of_django_cache_tag(fence_caches: None) -> None:
    ours = Template("{% load fence %}{% fencedcache 60 sidebar user %}[{{ slow }}]{% endfencedcache %}")
    theirs = Template('{% load cache %}{% cache 60 sidebar user using="plain" %}[{{ slow }}]{% endcache %}')
    for user in ("ann", "bob", "ann"):
        slow_ours, slow_theirs = Slow(), Slow()
        assert ours.render(Context({"slow": slow_ours, "user": user})) == \
            theirs.render(Context({"slow": slow_theirs, "user": user}))
        assert slow_ours.renders == slow_theirs.renders
    key = make_template_fragment_key("sidebar", ["ann"])
    assert caches["default"].get(key) == caches["plain"].get(key) == "[expensive 1]"
    caches["default"].delete(key)  # the invalidation code written for {% cache %} works unchanged
    slow = Slow()
    assert ours.render(Context({"slow": slow, "user": "ann"})) == "[expensive 1]" and slow.renders == 1


def test_fragment_renders_once_for_concurrent_requests(fence_caches: None) -> None:
    template = Template("{% load fence %}{% fencedcache 60 hot %}{{ slow }}{% endfencedcache %}")
    slow = Slow()
    results, errors, _ = in_threads(15, lambda: template.render(Context({"slow": slow})))
    assert not errors and slow.renders == 1
    assert set(results) == {"expensive 1"}


def test_fragment_using_and_grace_arguments(fence_caches: None, settings: Any) -> None:
    settings.CACHES = {**settings.CACHES, "other": {**settings.CACHES["default"]}}
    template = Template('{% load fence %}{% fencedcache 60 f using="other" grace=5 %}x{% endfencedcache %}')
    assert template.render(Context()) == "x"
    assert caches["other"].get(make_template_fragment_key("f")) == "x"


@pytest.mark.parametrize(("source", "message"), [
    ("{% fencedcache %}x{% endfencedcache %}", "requires at least 2 arguments"),
    ("{% fencedcache 60 %}x{% endfencedcache %}", "requires at least 2 arguments"),
    ('{% fencedcache 60 f using="a" using="b" %}x{% endfencedcache %}', "got using= twice"),
    ("{% fencedcache 60 f grace= %}x{% endfencedcache %}", "empty grace="),
])
def test_fragment_syntax_errors(source: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=message):
        Template("{% load fence %}" + source)


@pytest.mark.parametrize(("source", "context", "message"), [
    ("{% fencedcache 'soon' f %}x{% endfencedcache %}", {}, "non-integer timeout value: 'soon'"),
    ("{% fencedcache t f %}x{% endfencedcache %}", {"t": "abc"}, "non-integer timeout value: 'abc'"),
    ('{% fencedcache 60 f using="nope" %}x{% endfencedcache %}', {}, "Invalid cache name .*'nope'"),
    ('{% fencedcache 60 f using="plain" %}x{% endfencedcache %}', {}, r"CACHES\['plain'\] is a LocMemCache"),
    ("{% fencedcache 60 f grace='x' %}x{% endfencedcache %}", {}, "non-numeric grace"),
    ("{% fencedcache 60 f grace=-1 %}x{% endfencedcache %}", {}, "negative grace"),
])
def test_fragment_render_errors_name_the_problem(fence_caches: None, source: str, context: dict[str, Any],
                                                 message: str) -> None:
    template = Template("{% load fence %}" + source)
    with pytest.raises(TemplateSyntaxError, match=message):
        template.render(Context(context))


# -- @fenced -------------------------------------------------------------------------------------------
calls: list[tuple[Any, ...]] = []


@fenced(60)
def price(product: str, quantity: int = 1) -> str:
    calls.append((product, quantity))
    time.sleep(0.2)
    return f"{product} x{quantity} @{uuid.uuid4().hex[:6]}"


@fenced(60, key="totals")
async def total(day: datetime.date) -> str:
    calls.append(("total", day))
    await asyncio.sleep(0.05)
    return f"total {day} {uuid.uuid4().hex[:6]}"


def test_fenced_function_computes_once_for_concurrent_callers(fence_caches: None) -> None:
    calls.clear()
    results, errors, _ = in_threads(15, lambda: price("tea", 2))
    assert not errors and calls == [("tea", 2)]
    assert len(set(results)) == 1


def test_fenced_keys_follow_the_signature_not_the_spelling(fence_caches: None) -> None:
    calls.clear()
    assert price("tea") == price("tea", 1) == price(product="tea", quantity=1)
    assert len(calls) == 1
    assert price("tea", 3) != price("tea")
    assert price.cache_key("tea") == price.cache_key(quantity=1, product="tea")
    assert price.cache_key("tea").startswith("fenced:tests.test_fragments.price:")


def test_fenced_invalidate_and_mark_stale(fence_caches: None) -> None:
    calls.clear()
    first = price("milk")
    assert price.invalidate("milk") is True
    second = price("milk")
    assert second != first and len(calls) == 2
    assert price.mark_stale("milk") is True
    results, errors, _ = in_threads(6, lambda: price("milk"))  # one refreshes, the others get the old value
    assert not errors and len(calls) == 3
    assert results.count(second) == 5
    assert price.mark_stale("never-computed") is False


def test_fenced_async_function(fence_caches: None) -> None:
    calls.clear()
    day = datetime.date(2026, 11, 23)

    async def storm() -> list[str]:
        return list(await asyncio.gather(*(total(day) for _ in range(10))))

    results = asyncio.run(storm())
    assert len(set(results)) == 1 and calls == [("total", day)]
    assert total.cache_key(day).startswith("fenced:totals:")
    assert asyncio.run(total.ainvalidate(day)) is True


@pytest.mark.parametrize("argument", [object(), lambda: 1, {1, object()}, [open]])
def test_fenced_refuses_arguments_without_a_stable_identity(argument: Any) -> None:
    with pytest.raises(TypeError, match="cannot build a cache key from an argument of type"):
        price.cache_key(argument)


def test_fenced_needs_a_timeout() -> None:
    with pytest.raises(TypeError, match=r"write @fenced\(300\)"):
        fenced(lambda: 1)  # type: ignore[arg-type]


def _key_in_child(queue: Any) -> None:
    queue.put(price.cache_key("tea", 2) + "|" + Fenced(len, 1, None, None, None).cache_key(
        {"b": [1, 2.5, decimal.Decimal("1.10")], "a": (uuid.UUID(int=7), datetime.date(2026, 1, 1), b"x")}))


def test_fenced_keys_are_the_same_in_another_process() -> None:
    queue = CONTEXT.Queue()
    child = CONTEXT.Process(target=_key_in_child, args=(queue,))
    child.start()
    theirs = queue.get(timeout=30)
    child.join(10)
    ours = price.cache_key("tea", 2) + "|" + Fenced(len, 1, None, None, None).cache_key(
        {"a": (uuid.UUID(int=7), datetime.date(2026, 1, 1), b"x"), "b": [1, 2.5, decimal.Decimal("1.10")]})
    assert theirs == ours

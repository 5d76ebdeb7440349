"""``{% fencedcache %}``: Django's ``{% cache %}`` with the block rendered once across processes.

``{% load fence %}{% fencedcache timeout fragment_name [vary_on ...] [using="alias"] [grace=N] %}``

The arguments and the key are those of Django's tag
(``make_template_fragment_key``), so code that invalidates fragments with
that key works unchanged. The alias is ``using`` if given, else
"template_fragments" if configured, else "default"; it must be a FencedCache.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.core.cache import InvalidCacheBackendError, caches
from django.core.cache.utils import make_template_fragment_key
from django.core.exceptions import ImproperlyConfigured
from django.template.base import FilterExpression, NodeList, Parser, Token

from ..httpcache import fenced_alias

register = template.Library()


class FencedCacheNode(template.Node):
    def __init__(self, nodelist: NodeList, expire_time: FilterExpression, fragment_name: str,
                 vary_on: list[FilterExpression], cache_name: FilterExpression | None,
                 grace: FilterExpression | None) -> None:
        self.nodelist = nodelist
        self.expire_time_var = expire_time
        self.fragment_name = fragment_name
        self.vary_on = vary_on
        self.cache_name = cache_name
        self.grace = grace

    def render(self, context: template.Context) -> str:
        try:
            expire_time = self.expire_time_var.resolve(context)
        except template.VariableDoesNotExist as exc:
            raise template.TemplateSyntaxError(
                f'"fencedcache" tag got an unknown variable: {self.expire_time_var.var!r}') from exc
        if expire_time is not None:
            try:
                expire_time = int(expire_time)
            except (ValueError, TypeError) as exc:
                raise template.TemplateSyntaxError(
                    f'"fencedcache" tag got a non-integer timeout value: {expire_time!r}') from exc
        grace = None
        if self.grace is not None:
            raw = self.grace.resolve(context)
            try:
                grace = float(raw)
            except (ValueError, TypeError) as exc:
                raise template.TemplateSyntaxError(f'"fencedcache" tag got a non-numeric grace: {raw!r}') from exc
            if grace < 0:
                raise template.TemplateSyntaxError(f'"fencedcache" tag got a negative grace: {raw!r}')
        cache = self._cache(context)
        vary_on = [var.resolve(context) for var in self.vary_on]
        key = make_template_fragment_key(self.fragment_name, vary_on)
        value = cache.get_or_set(key, lambda: str(self.nodelist.render(context)), expire_time, grace=grace)
        return str(value)

    def _cache(self, context: template.Context) -> Any:
        if self.cache_name is not None:
            name = self.cache_name.resolve(context)
            try:
                caches[name]
            except InvalidCacheBackendError as exc:
                raise template.TemplateSyntaxError(
                    f"Invalid cache name specified for fencedcache tag: {name!r}") from exc
        else:
            try:
                caches["template_fragments"]
                name = "template_fragments"
            except InvalidCacheBackendError:
                name = "default"
        try:
            return fenced_alias(name, "{% fencedcache %}")
        except ImproperlyConfigured as exc:
            raise template.TemplateSyntaxError(str(exc)) from exc


@register.tag("fencedcache")
def do_fencedcache(parser: Parser, token: Token) -> FencedCacheNode:
    """``{% fencedcache timeout fragment_name [vary_on ...] [using="alias"] [grace=N] %}…{% endfencedcache %}``."""
    nodelist = parser.parse(("endfencedcache",))
    parser.delete_first_token()
    tokens = token.split_contents()
    tag = tokens[0]
    options: dict[str, FilterExpression] = {}
    while len(tokens) > 1 and tokens[-1].split("=", 1)[0] in ("using", "grace") and "=" in tokens[-1]:
        name, _, value = tokens.pop().partition("=")
        if name in options:
            raise template.TemplateSyntaxError(f"'{tag}' tag got {name}= twice.")
        if not value:
            raise template.TemplateSyntaxError(f"'{tag}' tag got an empty {name}=.")
        options[name] = parser.compile_filter(value)
    if len(tokens) < 3:
        raise template.TemplateSyntaxError(
            f"'{tag}' tag requires at least 2 arguments: a timeout and a fragment name "
            f"({{% {tag} 500 sidebar %}}).")
    return FencedCacheNode(nodelist, parser.compile_filter(tokens[1]), tokens[2],
                           [parser.compile_filter(t) for t in tokens[3:]], options.get("using"), options.get("grace"))

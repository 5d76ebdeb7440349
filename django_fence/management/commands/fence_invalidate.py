"""``manage.py fence_invalidate URL [URL ...] [--hard] [--cache ALIAS] [--key-prefix P]``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_fence.invalidation import absolute_url, invalidate_page


class Command(BaseCommand):
    help = (
        "Make every cached variant of each URL stale (the next request re-renders once while the others get "
        "the old page), or gone with --hard. URLs are absolute, as requests see them: https://example.com/news/."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("urls", nargs="+", metavar="URL", help="absolute URL of a cached page")
        parser.add_argument("--hard", action="store_true", help="drop the pages instead of making them stale")
        parser.add_argument("--cache", default="default", help="the FencedCache alias the pages are in")
        parser.add_argument("--key-prefix", default="", help="the key prefix the pages were cached with")

    def handle(self, *args: Any, **options: Any) -> None:
        urls: list[str] = options["urls"]
        try:  # every URL is checked before anything is written
            checked = [absolute_url(url) for url in urls]
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None
        how = "gone" if options["hard"] else "stale"
        for url in checked:
            invalidate_page(url, soft=not options["hard"], cache=options["cache"], key_prefix=options["key_prefix"])
            self.stdout.write(f"{url}: every cached variant is now {how}")

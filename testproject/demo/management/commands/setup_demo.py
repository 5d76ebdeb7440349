"""``manage.py setup_demo``: create the demo's superuser and say where the demo lives."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

USERNAME = "admin"
PASSWORD = "admin"


class Command(BaseCommand):
    """Create the superuser admin/admin if missing; print the demo's URLs and login."""

    help = (
        "Prepare the django-fence demo: create the superuser admin (password admin) "
        "unless a user of that name exists, then print the demo's URLs and login. "
        "Run it after migrate; running it again changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="Where runserver will listen, used in the printed URLs (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        base_url = options["base_url"].rstrip("/")
        user_model = get_user_model()
        lookup = {user_model.USERNAME_FIELD: USERNAME}
        if user_model._default_manager.filter(**lookup).exists():
            created = False
        else:
            user_model._default_manager.create_superuser(**lookup, email="admin@example.com", password=PASSWORD)
            created = True
        if verbosity == 0:
            return
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created superuser {USERNAME!r} (password {PASSWORD!r})."))
        else:
            self.stdout.write(f"User {USERNAME!r} already exists; left unchanged.")
        backing = settings.CACHES["backing"]["BACKEND"].rsplit(".", 1)[-1]
        self.stdout.write(
            f"Demo: {base_url}/ (a 200 ms report served through FencedCache over {backing}), "
            f"admin at {base_url}/admin/ - login {USERNAME} / {PASSWORD}"
        )
        self.stdout.write(
            f"Pages through the fence: {base_url}/page/ (@fenced_cache_page), "
            f"{base_url}/fragment/ ({{% fencedcache %}}), {base_url}/fenced/ (@fenced)"
        )

"""``manage.py setup_demo``: create the demo's superuser and say where the demo lives."""

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from testproject.demo.streams import SAMPLE_STREAM, seed_sample_stream

USERNAME = "admin"
PASSWORD = "admin"
SAMPLE_QUESTION = "Which cache should a poll under a traffic spike write to?"
SAMPLE_CHOICES = ("memcached", "Redis", "the database, one vote at a time")



class Command(BaseCommand):
    """Create the superuser admin/admin if missing; print the demo's URLs and login."""

    help = (
        "Prepare the django-fence demo: create the superuser admin (password admin) "
        "unless a user of that name exists, and a sample poll unless it exists, then print "
        "the demo's URLs and login. "
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
        question_created = self._sample_question()
        streamed = seed_sample_stream()
        if verbosity == 0:
            return
        if created:
            self.stdout.write(self.style.SUCCESS(f"Created superuser {USERNAME!r} (password {PASSWORD!r})."))
        else:
            self.stdout.write(f"User {USERNAME!r} already exists; left unchanged.")
        if question_created:
            self.stdout.write(self.style.SUCCESS(f"Created the sample poll {SAMPLE_QUESTION!r}."))
        if streamed:
            self.stdout.write(self.style.SUCCESS(f"Created the sample stream {SAMPLE_STREAM!r} ({streamed} items)."))
        backing = settings.CACHES["backing"]["BACKEND"].rsplit(".", 1)[-1]
        self.stdout.write(
            f"Demo: {base_url}/ (a 200 ms report served through FencedCache over {backing}), "
            f"admin at {base_url}/admin/ - login {USERNAME} / {PASSWORD}"
        )
        self.stdout.write(
            f"Pages through the fence: {base_url}/page/ (@fenced_cache_page), "
            f"{base_url}/fragment/ ({{% fencedcache %}}), {base_url}/fenced/ (@fenced)"
        )
        self.stdout.write(f"Poll: {base_url}/polls/ (flush votes with: manage.py flush_vote_queue --loop)")
        self.stdout.write(f"Fence dashboard (statistics, streams, vote queue): {base_url}/admin/django_fence/fence/")

    def _sample_question(self) -> bool:
        """Create the sample poll unless a question with its text exists; True if created."""
        from django_fence.polls.models import Question

        if Question.objects.filter(question_text=SAMPLE_QUESTION).exists():
            return False
        question = Question.objects.create(question_text=SAMPLE_QUESTION)
        for text in SAMPLE_CHOICES:
            question.choices.create(choice_text=text)
        return True

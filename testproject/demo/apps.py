"""App configuration of the demo app."""

from django.apps import AppConfig
from django.conf import settings


class DemoConfig(AppConfig):
    """The demo app; its label is "demo" so templates and URLs read simply."""

    name = "testproject.demo"
    label = "demo"
    verbose_name = "django-fence demo"

    def ready(self) -> None:
        # The embedded default for streams is an in-process fakeredis: the server's own process must
        # hold the sample stream (setup_demo fills a real Redis named by FENCE_REDIS_URL instead).
        if getattr(settings, "DEMO_EMBEDDED_STREAMS", False):
            from testproject.demo.streams import seed_sample_stream

            seed_sample_stream()

"""App configuration of the demo app."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo app; its label is "demo" so templates and URLs read simply."""

    name = "testproject.demo"
    label = "demo"
    verbose_name = "django-fence demo"

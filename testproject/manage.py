#!/usr/bin/env python
"""Django's command-line utility for the django-fence demo project."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    """Run a management command with the demo project's settings."""
    # `python testproject/manage.py` puts testproject/ itself first on sys.path.
    # Swap it for the repository root so `testproject.*` and `django_fence`
    # import from a checkout under one name each (no stray top-level `demo`).
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()

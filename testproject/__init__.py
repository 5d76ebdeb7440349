"""A runnable demo project for django-fence (``python testproject/manage.py runserver``)."""

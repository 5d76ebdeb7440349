"""The small Django project that benchmarks/view_storm.py serves with gunicorn."""

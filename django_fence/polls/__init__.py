"""django-fence's poll app: votes through a write-behind queue, flushed by ``manage.py flush_vote_queue``."""

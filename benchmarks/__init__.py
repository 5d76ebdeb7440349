"""Side-by-side measurements of django-fence against its peers; run each script from the repository root."""

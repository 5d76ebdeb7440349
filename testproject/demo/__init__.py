"""The demo app: a report through the fence's get_or_set, and pages through its decorators and tag."""

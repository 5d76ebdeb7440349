"""The demo app: one page whose expensive part is served through the fence."""

"""URLs of the demo app (namespace "demo")."""

from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("mark-stale/", views.mark_stale, name="mark_stale"),
    path("delete/", views.delete, name="delete"),
    path("storm/", views.storm, name="storm"),
]

"""URLs of the demo app (namespace "demo")."""

from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("mark-stale/", views.mark_stale, name="mark_stale"),
    path("delete/", views.delete, name="delete"),
    path("storm/", views.storm, name="storm"),
    path("page/", views.page, name="page"),
    path("page/storm/", views.page_storm, {"name": "page"}, name="page_storm"),
    path("fragment/", views.fragment, name="fragment"),
    path("fragment/storm/", views.page_storm, {"name": "fragment"}, name="fragment_storm"),
    path("fenced/", views.fenced_function, name="fenced"),
    path("fenced/storm/", views.page_storm, {"name": "fenced"}, name="fenced_storm"),
]

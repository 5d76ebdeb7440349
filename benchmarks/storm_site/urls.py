"""URLs of the storm site: the pages, named as in views.PAGES, and the counters and warm-up."""

from django.urls import path

from . import views

urlpatterns = [
    path("cache_page/", views.cache_page_view),
    path("fenced_cache_page/", views.fenced_view),
    path("fenced_cache_page_no_grace/", views.fenced_no_grace_view),
    path("renders/", views.renders),
    path("warm/", views.warm),
]

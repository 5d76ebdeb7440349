"""URLs of the demo project: the fenced demo page at ``/`` and the admin."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("polls/", include("django_fence.polls.urls")),
    path("", include("testproject.demo.urls")),
]

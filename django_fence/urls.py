"""``path("fence/", include("django_fence.urls"))`` serves ``fence/metrics``."""

from django.urls import path

from . import views

app_name = "django_fence"

urlpatterns = [path("metrics", views.metrics, name="metrics")]

from django.contrib import admin
from django.urls import include, path

from tests import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("fence/", include("django_fence.urls")),
    path("polls/", include("django_fence.polls.urls")),
    path("pages/slow/", views.slow_page),
    path("pages/async-slow/", views.async_slow_page),
    path("site/<str:name>/", views.counted),
    path("async-site/<str:name>/", views.async_counted),
]

"""URLs of the poll app, namespace ``polls``.

Include them with ``path("polls/", include("django_fence.polls.urls"))``.
"""

from django.urls import path

from . import views

app_name = "polls"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:question_id>/", views.detail, name="detail"),
    path("<int:question_id>/vote/", views.vote, name="vote"),
    path("<int:question_id>/results/", views.results, name="results"),
    path("<int:question_id>/results.json", views.results_json, name="results_json"),
]

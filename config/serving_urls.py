"""The serving process's URLs (config/serving_wsgi.py): the OpenAI-compatible endpoint only."""

from django.urls import path

from unlearning import endpoint

urlpatterns = [
    path("v1/models", endpoint.models, name="serving-models"),
    path("v1/completions", endpoint.completions, name="serving-completions"),
    path("v1/chat/completions", endpoint.chat_completions, name="serving-chat-completions"),
]

from django.urls import URLPattern, URLResolver, path, re_path

from inference import api_v1

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/messages", api_v1.messages, name="v1_messages"),
    path("v1/models", api_v1.models, name="v1_models"),
    path("v1/models/<str:model_id>", api_v1.models, name="v1_model"),
    re_path(r"^v1/(?P<rest>.*)$", api_v1.not_found),
]

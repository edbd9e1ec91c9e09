from django.urls import URLPattern, URLResolver, path, re_path

from inference import api, api_v1, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/messages", api_v1.messages, name="v1_messages"),
    path("v1/models", api_v1.models, name="v1_models"),
    path("v1/models/<str:model_id>", api_v1.models, name="v1_model"),
    re_path(r"^v1/(?P<rest>.*)$", api_v1.not_found),
    path("api/conversations/", api.ConversationListCreateApi.as_view(), name="api_conversations"),
    path("api/conversations/<str:conversation_id>/", api.ConversationDetailApi.as_view(), name="api_conversation"),
    path("api/conversations/<str:conversation_id>/messages/", api.MessageSendApi.as_view(), name="api_message_send"),
    path("api/conversations/<str:conversation_id>/retry/", api.MessageRetryApi.as_view(), name="api_message_retry"),
    path("api/models/", api.ModelListApi.as_view(), name="api_models"),
    path("api/usage/me/", api.UsageMeApi.as_view(), name="api_usage_me"),
    path("chat/", views.chat, name="chat"),
    path("chat/<str:conversation_id>/", views.chat, name="chat_conversation"),
]

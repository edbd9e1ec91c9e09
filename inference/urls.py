from django.urls import URLPattern, URLResolver, path, re_path

from inference import api, api_batches, api_chat, api_v1, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/messages", api_v1.messages, name="v1_messages"),
    path("v1/messages/count_tokens", api_v1.count_tokens, name="v1_count_tokens"),
    path("v1/messages/batches", api_batches.batches, name="v1_batches"),
    path("v1/messages/batches/<str:batch_id>", api_batches.batch, name="v1_batch"),
    path("v1/messages/batches/<str:batch_id>/cancel", api_batches.batch_cancel_view, name="v1_batch_cancel"),
    path("v1/messages/batches/<str:batch_id>/results", api_batches.batch_results_view, name="v1_batch_results"),
    path("v1/models", api_v1.models, name="v1_models"),
    path("v1/models/<str:model_id>", api_v1.models, name="v1_model"),
    re_path(r"^v1/(?P<rest>.*)$", api_v1.not_found),
    path("api/conversations/", api.ConversationListCreateApi.as_view(), name="api_conversations"),
    path("api/conversations/<str:conversation_id>/", api.ConversationDetailApi.as_view(), name="api_conversation"),
    path("api/conversations/<str:conversation_id>/messages/", api.MessageSendApi.as_view(), name="api_message_send"),
    path("api/conversations/<str:conversation_id>/retry/", api.MessageRetryApi.as_view(), name="api_message_retry"),
    path("api/conversations/<str:conversation_id>/messages/<str:message_id>/activate/",
         api_chat.MessageActivateApi.as_view(), name="api_message_activate"),
    path("api/conversations/<str:conversation_id>/share/", api_chat.ConversationShareApi.as_view(),
         name="api_conversation_share"),
    path("api/conversations/<str:conversation_id>/export/", api_chat.ConversationExportApi.as_view(),
         name="api_conversation_export"),
    path("api/conversations/<str:conversation_id>/attachments/", api_chat.AttachmentUploadApi.as_view(),
         name="api_attachment_upload"),
    path("api/presets/", api_chat.PresetListApi.as_view(), name="api_presets"),
    path("api/models/", api.ModelListApi.as_view(), name="api_models"),
    path("api/usage/me/", api.UsageMeApi.as_view(), name="api_usage_me"),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's); the chat's pages link the SVG.
    path("favicon.ico", views.favicon),
    path("chat/", views.chat, name="chat"),
    path("chat/list/", views.chat_list, name="chat_list"),
    path("chat/shared/<str:share_id>/", views.chat_shared, name="chat_shared"),
    path("chat/attachments/<str:attachment_id>/", views.attachment_file, name="chat_attachment"),
    path("chat/<str:conversation_id>/", views.chat, name="chat_conversation"),
]

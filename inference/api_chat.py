"""Conversations API, the chat's extras: versions, sharing, export, attachments and system-prompt presets."""

from __future__ import annotations

import json
from typing import Any

from django.db import transaction
from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.users import request_user
from inference.api import _error, _invalid, _not_found
from inference.attachments import AttachmentRefused, attachment_create
from inference.chat import conversation_share, message_activate
from inference.exports import conversation_json, conversation_markdown, export_filename
from inference.gateway import InvalidRequest
from inference.models import ChatPreference, Message
from inference.selectors import conversation_get

MAX_PRESETS = 50


class MessageActivateApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, conversation_id: str, message_id: str) -> Response:
        """Continue the conversation from this version of an answer."""
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        try:
            message = Message.objects.filter(conversation=conversation, id=message_id).first()
        except (ValueError, TypeError):
            message = None
        if message is None:
            return _error(404, "No such message.")
        try:
            message_activate(message=message)
        except InvalidRequest as exc:
            return _error(400, str(exc))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversationShareApi(APIView):
    class ShareOutput(serializers.Serializer[Any]):
        url = serializers.CharField(allow_null=True)

    @extend_schema(request=None, responses=ShareOutput)
    def post(self, request: Request, conversation_id: str) -> Response:
        """Share read-only with the signed-in users of this organisation; answers the link."""
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        if conversation.share_id is None:
            conversation_share(conversation=conversation, shared=True)
        return Response({"url": request.build_absolute_uri(reverse("chat_shared", args=[conversation.share_id]))})

    @extend_schema(responses=ShareOutput)
    def delete(self, request: Request, conversation_id: str) -> Response:
        """Stop sharing: the link stops working (sharing again makes a new one)."""
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        conversation_share(conversation=conversation, shared=False)
        return Response({"url": None})


class ConversationExportApi(APIView):
    # Not `format`: DRF reads that query parameter itself to pick a renderer.
    @extend_schema(parameters=[OpenApiParameter("as", str, enum=["md", "json"])],
                   responses={(200, "text/markdown"): str, (200, "application/json"): dict})
    def get(self, request: Request, conversation_id: str) -> HttpResponse | Response:
        """Download the conversation as Markdown (`?as=md`, the default) or JSON (`?as=json`)."""
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        kind = request.query_params.get("as", "md")
        if kind == "json":
            body, content_type = json.dumps(conversation_json(conversation), indent=2), "application/json"
        elif kind == "md":
            body, content_type = conversation_markdown(conversation), "text/markdown; charset=utf-8"
        else:
            return _invalid({"as": ["md or json."]})
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{export_filename(conversation, kind)}"'
        return response


class AttachmentUploadApi(APIView):
    parser_classes = [MultiPartParser]

    class AttachmentOutput(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        name = serializers.CharField()
        content_type = serializers.CharField()
        size = serializers.IntegerField()

    @extend_schema(request={"multipart/form-data": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"}}}}, responses={201: AttachmentOutput})
    def post(self, request: Request, conversation_id: str) -> Response:
        """Upload an image or PDF to send with the next message (needs access.use_vision)."""
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        upload = request.FILES.get("file")
        if upload is None:
            return _invalid({"file": ["a file is required."]})
        try:
            with transaction.atomic():
                attachment = attachment_create(conversation=conversation, user=request.user, upload=upload)
        except AttachmentRefused as exc:
            return _error(exc.status, exc.message)
        return Response(self.AttachmentOutput(attachment).data, status=status.HTTP_201_CREATED)


class PresetListApi(APIView):
    class PresetInput(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=80)
        system = serializers.CharField(max_length=20000, trim_whitespace=False)

    @extend_schema(responses=PresetInput(many=True))
    def get(self, request: Request) -> Response:
        """The user's saved system prompts."""
        return Response(presets_of(request.user))

    @extend_schema(request=PresetInput, responses=PresetInput(many=True))
    def post(self, request: Request) -> Response:
        """Save a system prompt under a name (the same name replaces it)."""
        data = self.PresetInput(data=request.data)
        if not data.is_valid():
            return _invalid(data.errors)
        with transaction.atomic():
            preference, _ = ChatPreference.objects.select_for_update().get_or_create(user=request_user(request))
            name = data.validated_data["name"]
            presets = [p for p in preference.settings.get("presets", []) if p.get("name") != name]
            if len(presets) >= MAX_PRESETS:
                return _error(400, f"You can keep at most {MAX_PRESETS} presets; delete one first.")
            presets.append(dict(data.validated_data))
            preference.settings = {**preference.settings, "presets": sorted(presets, key=lambda p: p["name"].lower())}
            preference.save(update_fields=["settings", "updated_at"])
        return Response(preference.settings["presets"], status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("name", str)], responses=PresetInput(many=True))
    def delete(self, request: Request) -> Response:
        """Delete the preset with this name."""
        name = str(request.query_params.get("name", ""))
        with transaction.atomic():
            preference, _ = ChatPreference.objects.select_for_update().get_or_create(user=request_user(request))
            kept = [p for p in preference.settings.get("presets", []) if p.get("name") != name]
            preference.settings = {**preference.settings, "presets": kept}
            preference.save(update_fields=["settings", "updated_at"])
        return Response(preference.settings["presets"])


def presets_of(user: Any) -> list[dict[str, str]]:
    preference = ChatPreference.objects.filter(user=user).first()
    return list(preference.settings.get("presets", [])) if preference else []

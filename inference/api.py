"""Conversations API (DRF): the web chat's backend, usable with a session, an API key or a bearer token.

Every conversation belongs to one user: another user's (or tenant's) conversation id answers 404, exactly as a
missing one. Sending a message answers `text/event-stream` (Anthropic stream events, then `atrium.saved`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from django.db import connection
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.http import error_body, error_from_exception
from config.users import request_user
from inference.api_v1 import models_for
from inference.catalog.selectors import catalog_entry
from inference.chat import chat_send, conversation_create, conversation_update
from inference.models import Conversation
from inference.selectors import conversation_get, conversation_list, usage_today

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from tenants.models import Tenant


def _tenant() -> Any:
    return connection.tenant  # type: ignore[attr-defined]


def _error(code: int, message: str) -> Response:
    return Response(error_body(code, message), status=code)


def _not_found() -> Response:
    return _error(status.HTTP_404_NOT_FOUND, "No such conversation.")


def _invalid(errors: Any) -> Response:
    return _error(status.HTTP_400_BAD_REQUEST,
                  "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in errors.items()))


class ConversationOutput(serializers.Serializer[Conversation]):
    id = serializers.UUIDField()
    title = serializers.CharField()
    model = serializers.CharField()
    system = serializers.CharField()
    pinned = serializers.BooleanField()
    shared = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_shared(self, conversation: Conversation) -> bool:
        return conversation.share_id is not None


class MessageOutput(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    role = serializers.CharField()
    content = serializers.JSONField()
    model = serializers.CharField()
    provider = serializers.CharField()
    incomplete = serializers.BooleanField()
    stop_reason = serializers.CharField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    active = serializers.BooleanField()
    version_group = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class ConversationListCreateApi(APIView):
    class Pagination(PageNumberPagination):
        page_size = 20
        page_size_query_param = "page_size"
        max_page_size = 100

    class CreateInput(serializers.Serializer[Any]):
        model = serializers.CharField(max_length=120)
        title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
        system = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)

    @extend_schema(responses=ConversationOutput(many=True))
    def get(self, request: Request) -> Response:
        paginator = self.Pagination()
        query = str(request.query_params.get("q", ""))[:200]
        conversations = conversation_list(user=request_user(request), query=query)
        page = paginator.paginate_queryset(conversations, request, view=self)
        return paginator.get_paginated_response(ConversationOutput(cast(Any, page), many=True).data)

    @extend_schema(request=CreateInput, responses={201: ConversationOutput})
    def post(self, request: Request) -> Response:
        data = self.CreateInput(data=request.data)
        if not data.is_valid():
            return _invalid(data.errors)
        entry = catalog_entry(data.validated_data["model"])
        if entry is None or entry not in models_for(request_user(request), _tenant()):
            return _error(403 if entry else 404, f"model: {data.validated_data['model']} is not available to you.")
        conversation = conversation_create(user=request_user(request), model=entry.model_id,
                                           title=data.validated_data["title"], system=data.validated_data["system"])
        return Response(ConversationOutput(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    class UpdateInput(serializers.Serializer[Any]):
        title = serializers.CharField(max_length=200, allow_blank=False, required=False)
        pinned = serializers.BooleanField(required=False)
        system = serializers.CharField(max_length=20000, allow_blank=True, required=False, trim_whitespace=False)

    class DetailOutput(ConversationOutput):
        messages = MessageOutput(many=True)

    @extend_schema(responses=DetailOutput)
    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        payload = dict(ConversationOutput(conversation).data)
        payload["messages"] = MessageOutput(conversation.messages.order_by("created_at"), many=True).data
        return Response(payload)

    @extend_schema(request=UpdateInput, responses=ConversationOutput)
    def patch(self, request: Request, conversation_id: str) -> Response:
        """Rename, pin or unpin, or set the conversation's system prompt (any of them)."""
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        data = self.UpdateInput(data=request.data)
        if not data.is_valid():
            return _invalid(data.errors)
        updated = conversation_update(conversation=conversation, **data.validated_data)
        return Response(ConversationOutput(updated).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, conversation_id: str) -> Response:
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        conversation.delete()  # messages and attachments cascade; attachment files go after the commit
        return Response(status=status.HTTP_204_NO_CONTENT)


class _StreamingApi(APIView):
    retry = False

    class SendInput(serializers.Serializer[Any]):
        content = serializers.CharField(required=False, allow_blank=False, max_length=200_000)
        model = serializers.CharField(required=False, max_length=120)
        max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
        edit_of = serializers.UUIDField(required=False, help_text="Replace this question (and what follows it).")
        attachments = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=5,
                                            help_text="Ids of files uploaded to this conversation.")

    def post(self, request: Request, conversation_id: str) -> HttpResponseBase:
        conversation = conversation_get(user=request_user(request), conversation_id=conversation_id)
        if conversation is None:
            return _not_found()
        data = self.SendInput(data=request.data)
        if not data.is_valid():
            return _invalid(data.errors)
        if not self.retry and not data.validated_data.get("content"):
            return _invalid({"content": ["the message text is required."]})
        try:
            turn = chat_send(conversation=conversation, user=request_user(request), tenant=_tenant(), request=request,
                             content=data.validated_data.get("content"), model=data.validated_data.get("model"),
                             max_tokens=data.validated_data.get("max_tokens"), retry=self.retry,
                             edit_of=data.validated_data.get("edit_of"),
                             attachment_ids=[str(i) for i in data.validated_data.get("attachments") or []])
        except Exception as exc:
            return error_from_exception(exc)
        response = StreamingHttpResponse(turn.sse(), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        for name, value in turn.admitted.clamp_headers.items():
            response[name] = value
        return response


class MessageSendApi(_StreamingApi):
    @extend_schema(request=_StreamingApi.SendInput, responses={(200, "text/event-stream"): str})
    def post(self, request: Request, conversation_id: str) -> HttpResponseBase:
        return super().post(request, conversation_id)


class MessageRetryApi(_StreamingApi):
    retry = True

    @extend_schema(request=_StreamingApi.SendInput, responses={(200, "text/event-stream"): str})
    def post(self, request: Request, conversation_id: str) -> HttpResponseBase:
        return super().post(request, conversation_id)


class ModelListApi(APIView):
    class ModelOutput(serializers.Serializer[Any]):
        id = serializers.CharField(source="model_id")
        display_name = serializers.CharField()
        tier = serializers.CharField(allow_null=True)

    @extend_schema(responses=ModelOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(self.ModelOutput(models_for(request_user(request), _tenant()), many=True).data)


class BudgetOutput(serializers.Serializer[Any]):
    budget = serializers.CharField(help_text="Which budget, e.g. \"the budget of user ann (per UTC day)\".")
    period = serializers.CharField()
    limit_micros = serializers.IntegerField()
    spent_micros = serializers.IntegerField(help_text="Spent plus held by calls in progress: what admission checks.")
    left_micros = serializers.IntegerField()
    limit = serializers.CharField()
    spent = serializers.CharField()
    left = serializers.CharField()
    resets_at = serializers.CharField()


class UsageMeApi(APIView):
    class UsageOutput(serializers.Serializer[Any]):
        requests = serializers.IntegerField()
        input_tokens = serializers.IntegerField()
        output_tokens = serializers.IntegerField()
        tokens_per_day_limit = serializers.IntegerField(allow_null=True)
        tokens_left = serializers.IntegerField(allow_null=True)
        tokens_used = serializers.IntegerField(help_text="Tokens counted against the limit today (the quota's own "
                                                         "counter, in-flight reservations included).")
        limit_label = serializers.CharField(allow_blank=True)
        cost_today_micros = serializers.IntegerField(help_text="Recorded cost of today's calls (micro-USD).")
        cost_month_micros = serializers.IntegerField(help_text="Recorded cost of this month's calls (micro-USD).")
        cost_today = serializers.CharField()
        cost_month = serializers.CharField()
        budgets = BudgetOutput(many=True, help_text="The budgets in money that apply to this user's chat calls, "
                                                    "read from the counters the budget check itself uses.")

    @extend_schema(responses=UsageOutput)
    def get(self, request: Request) -> Response:
        return Response(self.UsageOutput(usage_me(request_user(request), _tenant())).data)


def usage_me(user: User, tenant: Tenant) -> dict[str, Any]:
    """Today's usage and the daily token limit that binds this user first, read from the counters the quota check
    itself uses (Redis, UTC day), so the numbers shown are the numbers enforced."""
    from access.quotas import quota_tokens_used_today

    usage: dict[str, Any] = dict(usage_today(user=user))
    candidates = []
    if tenant.effective_user_tokens_per_day is not None:
        candidates.append((tenant.effective_user_tokens_per_day, quota_tokens_used_today(tenant=tenant, user=user),
                           "your daily limit"))
    if tenant.tokens_per_day is not None:
        candidates.append((tenant.tokens_per_day, quota_tokens_used_today(tenant=tenant),
                           "your organisation's daily limit"))
    if candidates:
        limit, used, label = min(candidates, key=lambda c: c[0] - c[1])
        usage.update(tokens_per_day_limit=limit, tokens_used=used, tokens_left=max(0, limit - used),
                     limit_label=label)
    else:
        usage.update(tokens_per_day_limit=None, tokens_left=None, limit_label="",
                     tokens_used=usage["input_tokens"] + usage["output_tokens"])
    usage.update(spend_me(user, tenant))
    return usage


def spend_me(user: Any, tenant: Any) -> dict[str, Any]:
    """The user's recorded cost today and this month, and the budgets that apply to their chat calls with the
    values of the very counters the budget check reads (spent plus held by calls in progress)."""
    from access.budgets import budget_counters, budgets_for, usd
    from inference.costs import Period, usage_total

    today = datetime.now(UTC).date()
    day = usage_total(period=Period(since=today, until=today), user_id=user.pk)["cost_micros"]
    month = usage_total(period=Period(since=today.replace(day=1), until=today), user_id=user.pk)["cost_micros"]
    budgets = []
    for limit, spent in budget_counters(budgets_for(schema=tenant.schema_name, user_id=user.pk)):
        left = max(0, limit.limit - spent)
        budgets.append({"budget": limit.label, "period": limit.period, "limit_micros": limit.limit,
                        "spent_micros": spent, "left_micros": left, "limit": usd(limit.limit), "spent": usd(spent),
                        "left": usd(left), "resets_at": limit.resets_at})
    return {"cost_today_micros": day, "cost_month_micros": month, "cost_today": usd(day), "cost_month": usd(month),
            "budgets": budgets}


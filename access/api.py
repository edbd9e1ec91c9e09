"""Access API: who the caller is, as the API sees them (GET /api/access/me/)."""

from __future__ import annotations

from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from access.policy import permitted_tiers
from access.selectors import user_role_names
from config.users import request_user


class MeApi(APIView):
    """The authenticated user, their roles and the model tiers they may call; handy to check a key or token."""

    class OutputSerializer(serializers.Serializer[dict[str, object]]):
        username = serializers.CharField()
        email = serializers.CharField()
        tenant = serializers.CharField()
        roles = serializers.ListField(child=serializers.CharField())
        tiers = serializers.ListField(child=serializers.CharField())
        auth_method = serializers.CharField()
        api_key_prefix = serializers.CharField(allow_null=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        tenant = connection.tenant  # type: ignore[attr-defined]
        auth = request.auth
        user = request_user(request)
        data = {
            "username": user.get_username(),
            "email": user.email,
            "tenant": tenant.schema_name,
            "roles": user_role_names(user),
            "tiers": permitted_tiers(user=user, tenant=tenant),
            "auth_method": getattr(auth, "method", "session"),
            "api_key_prefix": getattr(auth, "api_key_prefix", None),
        }
        return Response(self.OutputSerializer(data).data)

"""Issue 14, "error text": a 529 shown to a basic user listed the tenant's role ARN, the AWS account id, the
platform's IAM user, the STS URL, the provider order and internal exception class names. The caller now gets
what it can act on and the request id; the detail is in the audit entry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from audit.models import AuditEntry
from inference.errors import redact_configuration
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db

ROLE_ARN = "arn:aws:iam::123456789012:role/AtriumTenantRole"
STS_URL = "http://127.0.0.1:9/sts-endpoint/"
LEAKS = ("arn:", "123456789012", "AtriumTenantRole", "127.0.0.1", "sts-endpoint", "anthropic", "bedrock", "vertex",
         "us-east", "Error:", "Exception", "ProviderMisconfigured", "EndpointConnectionError", "HTTP 503")


@pytest.mark.parametrize("stream", [False, True])
def test_all_providers_down_says_nothing_about_configuration(stream: bool, sim: Any, client_a: Any, tenant_a: Any,
                                                             make_user: Any, api_key_for: Any, settings: Any,
                                                             tenant_update: Any, in_tenant: Any) -> None:
    settings.ATRIUM_STS_ENDPOINT_URL = STS_URL  # nothing listens there: assume-role fails with the URL in the error
    tenant_update(tenant_a, credentials={"bedrock": {"mode": "assume_role", "role_arn": ROLE_ARN,
                                                     "access_key": "AKIAPLATFORMUSER0000", "secret_key": "s"}})
    sim.faults.set("anthropic", "", status=503)
    sim.faults.set("vertex", "*", status=503)
    user = make_user(tenant_a, "basic_user")
    response = post_messages(client_a, api_key_for(tenant_a, user), body(stream=stream))
    assert response.status_code == 529
    error = json.loads(response.content)["error"]
    assert error["type"] == "overloaded_error"
    assert error["message"] == f"All providers are unavailable right now; try again shortly. " \
                               f"(request id {response['request-id']})"
    for leak in LEAKS:
        assert leak.lower() not in response.content.decode().lower(), leak
    with in_tenant(tenant_a):
        entry = AuditEntry.objects.get(event_type="model_call", user_id=user.pk)
    # The administrator's view keeps everything needed to fix it.
    assert ROLE_ARN in entry.error and "bedrock" in entry.error and "anthropic" in entry.error


def test_mid_stream_failure_event_carries_no_detail(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                                    api_key_for: Any, in_tenant: Any) -> None:
    sim.faults.set("anthropic", "", error_after_events=3)
    user = make_user(tenant_a, "basic_user")
    response = post_messages(client_a, api_key_for(tenant_a, user), body(stream=True))
    raw = b"".join(response.streaming_content).decode()
    assert "event: error" in raw
    assert "failed while answering" in raw
    for leak in ("anthropic", "127.0.0.1", "Error:", "connection"):
        assert leak.lower() not in raw.split("event: error", 1)[1].lower(), leak


def test_redaction_of_upstream_text() -> None:
    text = ("User: arn:aws:sts::123456789012:assumed-role/R/s is not authorized to perform bedrock:InvokeModel "
            "on https://bedrock-runtime.us-east-1.amazonaws.com/model/x for ops@example.com")
    redacted = redact_configuration(text)
    assert "arn:aws" not in redacted and "123456789012" not in redacted and "amazonaws" not in redacted
    assert "example.com" not in redacted and "is not authorized" in redacted

"""A model call as the gateway sees it: the `Call` (who, what, from where), its validation, and what admission
hands to the call (`Admitted`); the errors a call is refused with before anything is sent upstream."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.urls import reverse

from access.budgets import BudgetReservation
from access.errors import NotPermitted
from access.policy import PolicyDecision
from access.quotas import Reservation
from config.ids import uuid4_hex
from inference.catalog.selectors import CatalogEntry
from inference.errors import InferenceError
from inference.types import MessageRequest, ProviderTarget

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.http import HttpRequest

    from tenants.models import Tenant

# Called inside the transaction that records usage and audit: (message or None, provider, region).
Persist = Callable[[dict[str, Any] | None, str, str], None]

# Body fields the gateway owns; everything else is passed to the provider as the caller sent it.
OWN_FIELDS = {"model", "stream"}
MESSAGE_ROLES = {"user", "assistant"}  # a message's role (access.roles has the users' roles)

class InvalidRequest(InferenceError):
    status = 400
    error_type = "invalid_request_error"


class QuotaUnavailable(InferenceError):
    """Redis (quotas, breakers) does not answer: nothing can be admitted."""

    status = 503
    error_type = "api_error"

    def __init__(self) -> None:
        super().__init__("Atrium cannot check quotas right now. Retry in a few seconds.")


class ConsentRequired(NotPermitted):
    def __init__(self, version: int, url: str) -> None:
        super().__init__(f"Accept the organisation's processing notice (version {version}) at {url} before using "
                         f"models.", permission=None)
        self.version = version
        self.url = url


@dataclass
class Call:
    tenant: Tenant
    user: User
    body: dict[str, Any]
    source: str  # "api" (/v1), "chat" (conversations API and web chat)
    request: HttpRequest | None = None  # for audit IP / user agent / session
    auth_method: str = "session"
    auth_metadata: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""  # the call's idempotency key (request_id_for)
    betas: tuple[str, ...] = ()  # anthropic-beta names, checked against the tenant's policy (admission.betas_admit)

    def __post_init__(self) -> None:
        if not self.request_id:
            self.request_id = request_id_for(self.request)


def request_id_for(request: HttpRequest | None) -> str:
    """The request id Atrium generated for this request (the response's `request-id` header). A client-supplied
    X-Request-Id is kept for log correlation but cannot be the idempotency key (a client reusing one would make
    a second call's record look like a retry), so it gets a unique suffix."""
    request_id = str(getattr(request, "request_id", "") or "")
    if not request_id:
        return f"req_{uuid4_hex()}"
    if request is not None and request.META.get("HTTP_X_REQUEST_ID", "") == request_id:
        return f"{request_id}.{uuid4_hex()[:16]}"
    return request_id


@dataclass
class Admitted:
    call: Call
    entry: CatalogEntry
    decision: PolicyDecision
    reservation: Reservation
    message_request: MessageRequest
    started: float
    targets: list[ProviderTarget] = field(default_factory=list)
    admissions: dict[str, int] = field(default_factory=dict)  # breaker answers obtained at admission
    budget: BudgetReservation | None = None  # money held against the call's budgets (access.budgets)

    @property
    def clamp_headers(self) -> dict[str, str]:
        if not self.decision.clamped:
            return {}
        return {"atrium-max-tokens-clamped": f"requested={self.decision.requested_max_tokens}; "
                                             f"granted={self.decision.max_tokens}; reason={self.decision.clamp_reason}"}


# --- validation ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BodyFacts:
    """What admission needs of a valid body, found while validating it (one walk of the messages, not three)."""

    has_images: bool  # as has_images(body)
    input_estimate: int  # as estimate_input_tokens(body)


def _messages_walk(messages: Any) -> tuple[bool, int]:
    """validate_messages, answering also whether an image or document block appears anywhere in the messages
    (has_images) and the characters estimate_input_tokens counts for them, from the same pass."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required, a non-empty list of {role, content} objects.")
    images = False
    size = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in MESSAGE_ROLES:
            raise InvalidRequest(f"messages.{index}.role: must be 'user' or 'assistant'.")
        content = message.get("content")
        if isinstance(content, str):
            size += len(content)
            # A message of just a role and a text holds no block: only the message itself could claim a type.
            if not images and (message.get("type") in _VISION_BLOCKS
                               or (len(message) != 2 and _nested_images(message))):
                images = True
            continue
        if not isinstance(content, list) or not content:
            raise InvalidRequest(f"messages.{index}.content: a string or a non-empty list of content blocks.")
        if not all(isinstance(b, dict) and "type" in b for b in content):
            raise InvalidRequest(f"messages.{index}.content: every content block needs a type.")
        size += len(str(content))
        if not images and _nested_images(message):
            images = True
    return images, size


def validate_messages(messages: Any) -> None:
    """The `messages` list of a Messages or count_tokens body: a non-empty list of {role, content} objects."""
    _messages_walk(messages)


def validate_body(body: Any) -> BodyFacts:
    """Raise InvalidRequest naming the first thing wrong with a Messages body; else what admission needs of it."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: Field required (a model id such as claude-sonnet-5-5, or a tier).")
    if "\x00" in model:  # no model id holds one; refused here rather than echoed into a 404 and its logs
        raise InvalidRequest("model: holds a NUL character (U+0000); no model id does.")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Field required, an integer of at least 1.")
    images, size = _messages_walk(body.get("messages"))
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: must be true or false.")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: a string or a list of text blocks.")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("tools: must be a list.")
    system_size = len(system) if isinstance(system, str) else len(str(body.get("system", "")))
    return BodyFacts(has_images=images, input_estimate=(size + system_size) // 4 + 1)


STREAM_FAILED_MESSAGE = "The provider failed while answering, so the answer is incomplete; try again."
_VISION_BLOCKS = frozenset({"image", "document"})


def has_images(body: dict[str, Any]) -> bool:
    """Whether any image or document block appears anywhere in the messages, however deeply nested (inside a
    tool_result, a search result, a future container block): the vision permission must see them all."""
    return _nested_images(body.get("messages"))


def _nested_images(root: Any) -> bool:
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in _VISION_BLOCKS:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def with_notice(system: Any, notice: str) -> Any:
    """Append the tenant's processing notice to the system prompt, as the seed does."""
    notice = notice.strip()
    if not notice:
        return system
    if system is None or system == "":
        return notice
    if isinstance(system, str):
        return f"{system}\n\n{notice}"
    return [*system, {"type": "text", "text": notice}]


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """A cheap upper-ish estimate for the reservation (about 4 characters a token); settled exactly afterwards."""
    size = sum(len(str(m.get("content", ""))) for m in body.get("messages") or []) + len(str(body.get("system", "")))
    return size // 4 + 1


def consent_url(call: Call) -> str:
    path = reverse("consent")
    return call.request.build_absolute_uri(path) if call.request is not None else path

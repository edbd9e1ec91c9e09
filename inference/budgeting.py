"""What a call may cost at most, for the budgets' reservation at admission (access.budgets): the call's input
bounded from above (UTF-8 bytes of its text: a token is never shorter than a byte), every output token it is
allowed, at the dearest price of the model over its providers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from access.budgets import BudgetPlan, budgets_for
from inference.catalog.pricing import max_cost_any_provider

# Anthropic bills an image at most about 1,600 tokens (it is downscaled beyond that); a PDF page about 3,000 for
# its image and text: a document is bounded by its size in bytes instead, as text.
IMAGE_MAX_TOKENS = 1600


def max_input_tokens(body: dict[str, Any]) -> int:
    """An upper bound of the call's input tokens (text bytes, images at their maximum, anything else as JSON)."""
    total = 0
    stack: list[Any] = [body.get("messages"), body.get("system"), body.get("tools"), body.get("tool_choice")]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if isinstance(node, str):
            total += len(node.encode())
        elif isinstance(node, dict):
            if node.get("type") == "image":
                total += IMAGE_MAX_TOKENS
                continue
            for key, value in node.items():
                total += len(str(key))
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
        else:
            total += len(json.dumps(node))
    return total + 16  # the role and turn markers around the messages


def budget_plan_for(*, tenant: Any, user: Any, api_key_prefix: str, model_id: str, body: dict[str, Any],
                    max_tokens: int) -> BudgetPlan | None:
    """The reservation against every budget that applies to this call, or None when none does."""
    limits = budgets_for(schema=tenant.schema_name, user_id=user.pk, api_key_prefix=api_key_prefix)
    if not limits:
        return None
    cost = max_cost_any_provider(model_id, datetime.now(UTC), input_tokens=max_input_tokens(body),
                                 max_output_tokens=max_tokens)
    return BudgetPlan(schema=tenant.schema_name, cost=cost, limits=limits)

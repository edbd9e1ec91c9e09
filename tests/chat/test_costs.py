"""Cost accounting: prices with effective dates, every call priced when recorded, and the cost selectors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from inference.catalog.models import CatalogModel, ModelPrice
from inference.catalog.pricing import Price, Tokens, cost_micros, max_cost_micros, price_at, prices_invalidate
from inference.costs import Period, cost_by, usage_stacked, usage_total
from inference.models import UsageRecord
from tests.chat.conftest import body, post_messages

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_prices() -> Any:
    prices_invalidate()
    yield
    prices_invalidate()


def _price(model_id: str, at: datetime, inp: str, out: str, *, provider: str = "", **extra: str) -> ModelPrice:
    return ModelPrice.objects.create(
        model=CatalogModel.objects.get(model_id=model_id), provider=provider, effective_from=at,
        input_usd_per_mtok=Decimal(inp), output_usd_per_mtok=Decimal(out),
        **{k: Decimal(v) for k, v in extra.items()})


def test_cost_is_exact_decimal_rounded_once_per_call() -> None:
    price = Price(effective_from=datetime(2026, 1, 1, tzinfo=UTC), input=Decimal("3"), output=Decimal("15"),
                  cache_read=Decimal("0.30"), cache_write=Decimal("3.75"), batch_discount_percent=Decimal("50"))
    # 1000 input at $3/MTok = 3000 µ$, 200 output at $15 = 3000 µ$, 7 cache reads at $0.30 = 2.1 µ$,
    # 10 cache writes at $3.75 = 37.5 µ$: 6039.6 -> 6040 µ$.
    tokens = Tokens(input=1000, output=200, cache_read=7, cache_write=10)
    assert cost_micros(price, tokens) == 6040
    assert cost_micros(price, tokens, batch=True) == 3020  # 3019.8 rounded half up
    assert cost_micros(price, Tokens(input=1)) == 3
    assert cost_micros(None, tokens) == 0
    # The reservation bound: input at the dearest input-side price (cache write), all the output allowed.
    assert max_cost_micros(price, input_tokens=100, max_output_tokens=64) == 375 + 960


def test_effective_date_boundaries_and_provider_prices() -> None:
    start = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
    _price("claude-haiku-5-5", start, "2", "10")
    _price("claude-haiku-5-5", start + timedelta(days=1), "4", "20")
    _price("claude-haiku-5-5", start, "9", "9", provider="bedrock")
    before = price_at("claude-haiku-5-5", "anthropic", start - timedelta(microseconds=1))
    assert before is not None and before.input == Decimal("1")  # the seeded price, still in effect
    at = price_at("claude-haiku-5-5", "anthropic", start)
    assert at is not None and at.input == Decimal("2") and at.output == Decimal("10")
    last = price_at("claude-haiku-5-5", "anthropic", start + timedelta(days=1) - timedelta(microseconds=1))
    assert last is not None and last.input == Decimal("2")
    later = price_at("claude-haiku-5-5", "vertex", start + timedelta(days=1))
    assert later is not None and later.input == Decimal("4")
    # A provider's own price wins over the every-provider price while it is in effect.
    bedrock = price_at("claude-haiku-5-5", "bedrock", start + timedelta(days=5))
    assert bedrock is not None and bedrock.input == Decimal("9")
    assert price_at("claude-haiku-5-5", "bedrock", start - timedelta(seconds=1)).input == Decimal("1")  # type: ignore[union-attr]


def test_price_change_after_a_call_leaves_its_cost(sim: Any, client_a: Any, tenant_a: Any, make_user: Any,
                                                   api_key_for: Any, in_tenant: Any) -> None:
    user = make_user(tenant_a, "basic_user")
    key = api_key_for(tenant_a, user)
    first = post_messages(client_a, key, body("Price me", model="claude-haiku-5-5"))
    assert first.status_code == 200, first.content
    usage = first.json()["usage"]
    expected_old = usage["input_tokens"] * 1 + usage["output_tokens"] * 5  # $1 / $5 per MTok = µ$ per token
    _price("claude-haiku-5-5", timezone.now(), "100", "500")
    prices_invalidate()
    second = post_messages(client_a, key, body("Price me again", model="claude-haiku-5-5"))
    assert second.status_code == 200
    usage2 = second.json()["usage"]
    with in_tenant(tenant_a):
        old = UsageRecord.objects.get(request_id=first["request-id"])
        new = UsageRecord.objects.get(request_id=second["request-id"])
        assert old.cost_micros == expected_old > 0
        assert new.cost_micros == usage2["input_tokens"] * 100 + usage2["output_tokens"] * 500
        prefix = key.split("_")[1]
        assert old.api_key == new.api_key == prefix
        period = Period(since=date.today() - timedelta(days=1), until=date.today() + timedelta(days=1))
        total = usage_total(period=period, user_id=user.pk)
        assert total["cost_micros"] == old.cost_micros + new.cost_micros
        by_key = cost_by(dimension="api_key", period=period, user_id=user.pk)
        assert by_key[0]["key"] == f"atr_{prefix}_…" and by_key[0]["cost_micros"] == total["cost_micros"]
        by_model = cost_by(dimension="model", period=period, user_id=user.pk)
        assert [(r["key"], r["requests"]) for r in by_model] == [("claude-haiku-5-5", 2)]
        assert cost_by(dimension="user", period=period, user_id=user.pk)[0]["key"] == user.username
        assert cost_by(dimension="provider", period=period, user_id=user.pk)[0]["key"] == "anthropic"
        days = cost_by(dimension="day", period=period, user_id=user.pk)
        assert sum(r["cost_micros"] for r in days) == total["cost_micros"]
        stacked = usage_stacked(period=period, stack="model", metric="cost", user_id=user.pk)
        assert len(stacked["days"]) == 3 and stacked["series"][0]["key"] == "claude-haiku-5-5"
        assert sum(stacked["series"][0]["values"]) == total["cost_micros"]


def test_the_gateways_integer_pricing_is_cost_micros_to_the_micro_usd() -> None:
    """inference.gateway._cost_micros prices a call in integers; it must give cost_micros' exact answer for every
    price and token count (ties rounded half up included), and hand what it cannot do exactly to cost_micros."""
    import random

    from inference.gateway import _cost_micros, _scaled_prices

    rng = random.Random(7)
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def decimal() -> Decimal:
        kind = rng.randrange(4)
        if kind == 0:
            return Decimal(rng.randrange(0, 100_000)).scaleb(-rng.randrange(0, 9))
        if kind == 1:
            return Decimal(f"{rng.randrange(0, 200)}.{rng.randrange(0, 10**6):06d}")
        if kind == 2:
            return Decimal(rng.choice(["0", "0.5", "1.25", "3E+1", "0.000001", "15.000000", "0.30", "7.5"]))
        return Decimal(rng.randrange(0, 10**12)).scaleb(-rng.randrange(6, 14))

    def tokens() -> int:
        return rng.choice([0, 1, 2, 3, 5, 10, 999, 10**6, 10**9, rng.randrange(0, 10**7)])

    for _ in range(4000):
        price = Price(effective_from=at, input=decimal(), output=decimal(), cache_read=decimal(),
                      cache_write=decimal(), batch_discount_percent=rng.choice([Decimal(0), Decimal(50),
                                                                                Decimal("12.5")]))
        for _ in range(5):
            used = Tokens(input=tokens(), output=tokens(), cache_read=tokens(), cache_write=tokens())
            for batch in (False, True):
                assert _cost_micros(price, used, batch=batch) == cost_micros(price, used, batch=batch), (price, used)
    tie = Price(effective_from=at, input=Decimal("0.5"), output=Decimal("1.5"), cache_read=Decimal(0),
                cache_write=Decimal(0))
    assert _cost_micros(tie, Tokens(input=1), batch=False) == cost_micros(tie, Tokens(input=1)) == 1
    assert _cost_micros(tie, Tokens(input=-1), batch=False) == cost_micros(tie, Tokens(input=-1)) == -1
    assert _cost_micros(None, Tokens(input=5), batch=False) == 0
    assert len(_scaled_prices) <= 256

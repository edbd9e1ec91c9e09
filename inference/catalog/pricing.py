"""Prices with effective dates, and the cost of one call in exact integer micro-USD (docs/costs.md).

Every call is priced once, when its usage is recorded, with the price in effect at the call's time; the cost is
stored with the usage and never recomputed, so a later price change cannot rewrite history. Prices are read from
an in-process cache refreshed like the catalog's (ATRIUM_CATALOG_CACHE_S); the effective dates, not the cache,
decide which price a call gets.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from inference.catalog.models import CatalogModel, ModelPrice
from inference.catalog.snapshot import CatalogSnapshot

MICROS_PER_USD = 1_000_000
TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens, from `effective_from` on."""

    effective_from: datetime
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    batch_discount_percent: Decimal = Decimal(0)


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


def cost_micros(price: Price | None, tokens: Tokens, *, batch: bool = False) -> int:
    """The cost of `tokens` at `price` in micro-USD: computed exactly in Decimal, rounded half up once per call."""
    if price is None:
        return 0
    usd = (Decimal(tokens.input) * price.input + Decimal(tokens.output) * price.output
           + Decimal(tokens.cache_read) * price.cache_read
           + Decimal(tokens.cache_write) * price.cache_write) / TOKENS_PER_MTOK
    if batch and price.batch_discount_percent:
        usd = usd * (100 - price.batch_discount_percent) / 100
    return int((usd * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def max_cost_micros(price: Price | None, *, input_tokens: int, max_output_tokens: int) -> int:
    """An upper bound of a call's cost before it is made (budget reservations): the estimated input at the dearest
    input-side price (a cache write costs more than plain input) and every allowed output token."""
    if price is None:
        return 0
    dearest_input = max(price.input, price.cache_write, price.cache_read)
    usd = (Decimal(input_tokens) * dearest_input + Decimal(max_output_tokens) * price.output) / TOKENS_PER_MTOK
    return int((usd * MICROS_PER_USD).to_integral_value(rounding="ROUND_CEILING"))


@dataclass(frozen=True)
class _Prices:
    # (model id, provider or "") -> prices sorted by effective_from
    table: dict[tuple[str, str], tuple[Price, ...]]
    starts: dict[tuple[str, str], tuple[datetime, ...]]
    list_prices: dict[str, Price]


_EPOCH = datetime(1970, 1, 1).astimezone()


def _load() -> _Prices:
    table: dict[tuple[str, str], list[Price]] = {}
    for row in ModelPrice.objects.select_related("model").order_by("effective_from"):
        table.setdefault((row.model.model_id, row.provider), []).append(Price(
            effective_from=row.effective_from, input=row.input_usd_per_mtok, output=row.output_usd_per_mtok,
            cache_read=row.cache_read_usd_per_mtok, cache_write=row.cache_write_usd_per_mtok,
            batch_discount_percent=row.batch_discount_percent))
    # A model without any price row is charged its catalog list price (never free): cache reads at a tenth and
    # cache writes at 1.25 times the input price, Anthropic's ratios.
    list_prices = {}
    for model in CatalogModel.objects.all():
        price_in = Decimal(model.input_price_cents_per_mtok) / 100
        list_prices[model.model_id] = Price(
            effective_from=_EPOCH, input=price_in, output=Decimal(model.output_price_cents_per_mtok) / 100,
            cache_read=price_in / 10, cache_write=price_in * Decimal("1.25"))
    frozen = {key: tuple(prices) for key, prices in table.items()}
    return _Prices(table=frozen,
                   starts={key: tuple(p.effective_from for p in prices) for key, prices in frozen.items()},
                   list_prices=list_prices)


_prices = CatalogSnapshot(_load)


def prices_invalidate() -> None:
    """Forget this process's cached prices (after an edit in the admin, and in tests)."""
    _prices.forget()


def price_at(model_id: str, provider: str, at: datetime) -> Price | None:
    """The price of `model_id` at `provider` in effect at `at`: the provider's own price if it has one in effect,
    else the price for every provider, else the catalog list price; None for a model the catalog does not know."""
    cache = _prices.current()
    for key in ((model_id, provider), (model_id, "")):
        starts = cache.starts.get(key)
        if starts:
            index = bisect_right(starts, at) - 1
            if index >= 0:
                return cache.table[key][index]
    return cache.list_prices.get(model_id)


def max_cost_any_provider(model_id: str, at: datetime, *, input_tokens: int, max_output_tokens: int) -> int:
    """The largest max_cost_micros of a model over its providers' prices in effect at `at` (the budget reservation
    does not know yet which provider will answer)."""
    return max(max_cost_micros(price_at(model_id, provider, at), input_tokens=input_tokens,
                               max_output_tokens=max_output_tokens)
               for provider in ("anthropic", "bedrock", "vertex", ""))

"""Shopify ``orders/create`` webhooks (``type: shopify``, default path ``/webhooks/shopify``).

Settings: ``secret`` (the app's client secret, or the store's webhook signing key), ``topics``
(accepted ``X-Shopify-Topic`` values, default ``[orders/create]``), ``dedupe_window_seconds``
(48 h; Shopify retries a failed delivery 8 times over 4 hours), plus the common source settings
(``max_body_bytes``, ``max_depth``, ``rate_limit``).

Answers: 401 when ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the raw body) is missing or
wrong; 413; 400 malformed JSON; 200 ``{"status": "ignored"}`` for a topic not in ``topics``
(Shopify retries anything but 2xx, so an unwanted topic is acknowledged, not refused); 200
``{"status": "duplicate", "message_id": ...}`` for a repeated ``X-Shopify-Event-Id`` (or, when
absent, ``X-Shopify-Webhook-Id``); otherwise whatever the channel's intake answers (202, 422...).
API keys are not checked (Shopify cannot send one): the signature authenticates the request.

Mapping onto the order model (see :func:`map_order`): ``order_id`` is the order ``id`` as an exact
decimal string (ids pass 2**53; the JSON parser keeps ints exact); ``amount`` is ``total_price``
as sent; ``customer_name`` comes from ``customer`` then the billing then the shipping address;
``customer_phone`` is the first of ``phone``, ``customer.phone``, ``billing_address.phone``,
``shipping_address.phone`` that is already E.164; a phone that is not is kept as
``shopify.raw_phone`` so that it cannot get the order refused. The useful Shopify fields (``id``,
``name`` such as ``#1001``, ``order_number``, statuses, ``test``) are kept under ``shopify``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from alertpipe.sources.base import register
from alertpipe.sources.webhook import (
    WebhookConfig,
    WebhookSource,
    full_name,
    id_str,
    obj,
    require_secret,
    split_phone,
    text,
)

SIGNATURE_HEADER = "x-shopify-hmac-sha256"
_META_HEADERS = {"topic": "x-shopify-topic", "event_id": "x-shopify-event-id",
                 "webhook_id": "x-shopify-webhook-id", "shop_domain": "x-shopify-shop-domain",
                 "triggered_at": "x-shopify-triggered-at", "api_version": "x-shopify-api-version"}


class ShopifyConfig(WebhookConfig):
    type: str = "shopify"
    path: str = "/webhooks/shopify"
    topics: list[str] = ["orders/create"]


def _item(line: Any) -> dict[str, Any]:
    li = obj(line)
    sku = (text(li.get("sku")) or id_str(li.get("variant_id")) or id_str(li.get("product_id"))
           or id_str(li.get("id")))
    item: dict[str, Any] = {"sku": sku, "qty": li.get("quantity", 1), "price": li.get("price")}
    for key in ("variant_id", "product_id"):
        if (value := id_str(li.get(key))) is not None:
            item[key] = value
    if (name := text(li.get("name")) or text(li.get("title"))) is not None:
        item["name"] = name
    return item


def map_order(payload: dict[str, Any]) -> dict[str, Any]:
    """A Shopify order (REST webhook payload) as an alertpipe order body."""
    customer = obj(payload.get("customer"))
    billing = obj(payload.get("billing_address"))
    shipping = obj(payload.get("shipping_address"))
    name = (full_name(customer.get("first_name"), customer.get("last_name"))
            or text(billing.get("name"))
            or full_name(billing.get("first_name"), billing.get("last_name"))
            or text(shipping.get("name")))
    phone, raw_phone = split_phone([payload.get("phone"), customer.get("phone"),
                                    billing.get("phone"), shipping.get("phone")])
    lines = payload.get("line_items")
    shopify: dict[str, Any] = {
        "id": id_str(payload.get("id")),
        "name": text(payload.get("name")),
        "order_number": id_str(payload.get("order_number")),
        "admin_graphql_api_id": text(payload.get("admin_graphql_api_id")),
        "financial_status": text(payload.get("financial_status")),
        "fulfillment_status": text(payload.get("fulfillment_status")),
        "test": payload.get("test") is True,
    }
    if raw_phone is not None:
        shopify["raw_phone"] = raw_phone
    return {
        "order_id": id_str(payload.get("id")),
        "customer_name": name,
        "customer_phone": phone,
        "amount": payload.get("total_price"),
        "currency": payload.get("currency", "USD"),
        "items": [_item(li) for li in lines] if isinstance(lines, list) else [],
        "created_at": payload.get("created_at"),
        "shopify": shopify,
    }


@register
class ShopifySource(WebhookSource):
    type_name = "shopify"
    Config = ShopifyConfig
    meta_headers = _META_HEADERS
    topic_header = _META_HEADERS["topic"]
    event_headers = (_META_HEADERS["event_id"], _META_HEADERS["webhook_id"])

    def check(self) -> None:
        require_secret(self.config.secret, "the Shopify app's client secret")

    def verify(self, request: Request, raw: bytes) -> Response | None:
        return self.base64_signed(request, raw, SIGNATURE_HEADER, "X-Shopify-Hmac-Sha256")

    def map(self, payload: dict[str, Any]) -> dict[str, Any]:
        return map_order(payload)


__all__ = ["ShopifyConfig", "ShopifySource", "map_order"]

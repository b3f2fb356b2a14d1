"""WooCommerce order webhooks (``type: woocommerce``, default path ``/webhooks/woocommerce``).

Settings: ``secret`` (the webhook's secret, as entered in WooCommerce → Settings → Advanced →
Webhooks), ``topics`` (accepted ``X-WC-Webhook-Topic`` values, default ``order.created`` and
``order.updated``), ``dedupe_window_seconds`` (48 h), and the common source settings.

When a webhook is saved WooCommerce sends a ping: a form body ``webhook_id=N``
(``application/x-www-form-urlencoded``), without a signature. It is answered 200
``{"status": "ok"}`` and nothing is queued (WooCommerce refuses to activate a webhook whose ping
fails). Every other request must carry ``X-WC-Webhook-Signature`` (base64 HMAC-SHA256 of the raw
body) or is refused 401. A topic not in ``topics`` is acknowledged 200 ``{"status": "ignored"}``.
A repeated ``X-WC-Webhook-Delivery-ID`` is answered 200 ``duplicate``.

``order.updated`` fires on every change of an order; the channel's ``dedupe`` (by default on
``order_id`` for 48 h) answers the repeats ``duplicate``, so each order is logged and alerted once
unless the channel sets ``dedupe: null``.

Mapping (see :func:`map_order`): ``order_id`` = ``id`` as a string (``number`` kept under
``woocommerce``); ``amount`` = ``total``; ``customer_name`` = billing (else shipping) first and
last name; ``customer_phone`` = billing (else shipping) phone when already E.164, otherwise kept
as ``woocommerce.raw_phone``; ``items[].price`` = the unit price before discounts,
``subtotal / quantity`` computed in Decimal (at most 6 places), else the line's ``price``;
``created_at`` = ``date_created_gmt`` read as UTC.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alertpipe.sources.base import register
from alertpipe.sources.webhook import (
    WebhookConfig,
    WebhookSource,
    full_name,
    id_str,
    money_str,
    obj,
    require_secret,
    split_phone,
    text,
)

SIGNATURE_HEADER = "x-wc-webhook-signature"
_PING = re.compile(rb"webhook_id=\d{1,20}")
_HAS_ZONE = re.compile(r"(?:[zZ]|[+-]\d\d:?\d\d)$")
_META_HEADERS = {"topic": "x-wc-webhook-topic", "delivery_id": "x-wc-webhook-delivery-id",
                 "webhook_id": "x-wc-webhook-id", "resource": "x-wc-webhook-resource",
                 "event": "x-wc-webhook-event", "source": "x-wc-webhook-source"}


class WooCommerceConfig(WebhookConfig):
    type: str = "woocommerce"
    path: str = "/webhooks/woocommerce"
    topics: list[str] = ["order.created", "order.updated"]


def is_ping(request: Request, raw: bytes) -> bool:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return ctype == "application/x-www-form-urlencoded" and _PING.fullmatch(raw.strip()) is not None


def _unit_price(line: dict[str, Any]) -> str | None:
    qty = line.get("quantity")
    subtotal = money_str(line.get("subtotal"))
    if subtotal is not None and isinstance(qty, int) and not isinstance(qty, bool) and qty > 0:
        try:
            return money_str(Decimal(subtotal) / qty)
        except InvalidOperation:
            pass
    return money_str(line.get("price"))


def _item(line: Any) -> dict[str, Any]:
    li = obj(line)
    sku = (text(li.get("sku")) or id_str(li.get("variation_id") or None)
           or id_str(li.get("product_id")) or id_str(li.get("id")))
    item: dict[str, Any] = {"sku": sku, "qty": li.get("quantity", 1), "price": _unit_price(li)}
    if (name := text(li.get("name"))) is not None:
        item["name"] = name
    if (product_id := id_str(li.get("product_id"))) is not None:
        item["product_id"] = product_id
    if (total := money_str(li.get("total"))) is not None:
        item["line_total"] = total
    return item


def _created_at(payload: dict[str, Any]) -> Any:
    gmt = text(payload.get("date_created_gmt"))
    if gmt is not None:
        return gmt if _HAS_ZONE.search(gmt) else gmt + "Z"
    return payload.get("date_created")  # site-local time without a zone: kept naive


def map_order(payload: dict[str, Any]) -> dict[str, Any]:
    """A WooCommerce order (REST API v3 webhook payload) as an alertpipe order body."""
    billing = obj(payload.get("billing"))
    shipping = obj(payload.get("shipping"))
    name = (full_name(billing.get("first_name"), billing.get("last_name"))
            or full_name(shipping.get("first_name"), shipping.get("last_name")))
    phone, raw_phone = split_phone([billing.get("phone"), shipping.get("phone")])
    lines = payload.get("line_items")
    woo: dict[str, Any] = {
        "id": id_str(payload.get("id")),
        "number": id_str(payload.get("number")),
        "status": text(payload.get("status")),
        "customer_id": id_str(payload.get("customer_id")),
        "payment_method": text(payload.get("payment_method")),
    }
    if raw_phone is not None:
        woo["raw_phone"] = raw_phone
    return {
        "order_id": id_str(payload.get("id")),
        "customer_name": name,
        "customer_phone": phone,
        "amount": payload.get("total"),
        "currency": payload.get("currency", "USD"),
        "items": [_item(li) for li in lines] if isinstance(lines, list) else [],
        "created_at": _created_at(payload),
        "woocommerce": woo,
    }


@register
class WooCommerceSource(WebhookSource):
    type_name = "woocommerce"
    Config = WooCommerceConfig
    meta_headers = _META_HEADERS
    topic_header = _META_HEADERS["topic"]
    event_headers = (_META_HEADERS["delivery_id"],)

    def check(self) -> None:
        require_secret(self.config.secret, "the secret of the WooCommerce webhook")

    def verify(self, request: Request, raw: bytes) -> Response | None:
        if is_ping(request, raw):
            return JSONResponse({"status": "ok"}, status_code=200)
        return self.base64_signed(request, raw, SIGNATURE_HEADER, "X-WC-Webhook-Signature")

    def map(self, payload: dict[str, Any]) -> dict[str, Any]:
        return map_order(payload)


__all__ = ["WooCommerceConfig", "WooCommerceSource", "is_ping", "map_order"]

"""The order schema: what an order POSTed to the order alert pipeline must look like.

:func:`validate_order` checks a parsed body (see :mod:`alertpipe.sources.jsonparse`) and returns
the normalised order as a plain ``dict``, or raises :class:`~alertpipe.errors.ValidationFailed`
listing every field at fault with a dotted path (``items.0.qty``) and a human message.

Normalisation rules (decisions recorded here, tested in ``tests/unit/test_order_schema.py``):

* ``order_id``: a non-blank string of at most 128 characters, or a non-negative integer turned
  into its exact decimal string (ids beyond 2**53 stay exact).
* ``amount`` and ``items[].price``: an ``int``, ``Decimal``, ``float`` (via ``Decimal(str(x))``)
  or a plain numeric string such as ``"349.99"`` (no exponent, no spaces); held as ``Decimal``.
  Finite, >= 0, at most 18 digits before the point and 6 after (the scale is kept as sent:
  ``"300.00"`` stays ``Decimal("300.00")``; a positive exponent is expanded, ``-0`` becomes ``0``).
  Booleans are refused.
* ``currency``: an active ISO 4217 code of a circulating currency, uppercase; default ``"USD"``.
  Fund, precious-metal and test codes (``XAU``, ``XTS``, ``USN`` ...) are refused.
* ``items``: a list (at most 1000) of ``{sku, qty, price}``; ``sku`` is required, ``qty``
  defaults to 1 (a whole number 1..1,000,000, booleans refused), ``price`` may be absent or null.
  Missing or null ``items`` becomes ``[]``.
* ``created_at``: an ISO 8601 date *and* time. With an offset it is converted to UTC and written
  back as ``datetime.isoformat()`` (``2024-05-01T10:30:00+00:00``); without one it is kept naive
  (``2024-05-01T12:30:00``), since inventing a zone would be a guess. Absent means ``None``.
* Every known key is present in the result; unknown keys (top level and per item) are kept as
  given, after the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from alertpipe.errors import FieldError, ValidationFailed

MAX_INTEGER_DIGITS = 18
MAX_DECIMAL_PLACES = 6
MAX_QTY = 1_000_000
MAX_ITEMS = 1000

_CURRENCY_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD
NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED
VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
"""
ACTIVE_CURRENCIES: frozenset[str] = frozenset(_CURRENCY_CODES.split())
"""Active ISO 4217 codes of circulating currencies (list of 2025, including ANG/XCG)."""

_E164 = re.compile(r"\+[1-9]\d{1,14}")
_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?")
_HAS_TIME = re.compile(r"\d[Tt ]\d")
_DATETIME_HINT = "must be an ISO 8601 date and time such as 2024-05-01T12:30:00Z"


def _fail(kind: str, message: str) -> NoReturn:
    # Values go in through the context so that braces in user input are never a template.
    raise PydanticCustomError(kind, "{message}", {"message": message})


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), f"a {type(value).__name__}")


def _money(value: object) -> Decimal:
    if isinstance(value, bool):
        _fail("wrong_type", "must be a number or numeric string, not a boolean")
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        if not _NUMERIC.fullmatch(value):
            _fail("bad_format", 'must be a numeric string such as "349.99"')
        number = Decimal(value)
    else:
        _fail("wrong_type", f"must be a number or numeric string, not {_kind(value)}")
    if not number.is_finite():
        _fail("out_of_range", "must be a finite number")
    if number < 0:
        _fail("out_of_range", "must not be negative")
    exponent = int(number.as_tuple().exponent)
    if number.is_zero():
        number = Decimal(0) if exponent > 0 else number.copy_abs()
    elif number.adjusted() >= MAX_INTEGER_DIGITS:
        _fail("out_of_range", f"must have at most {MAX_INTEGER_DIGITS} digits before the point")
    if exponent < -MAX_DECIMAL_PLACES:
        _fail("precision", f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return number.quantize(Decimal(1)) if exponent > 0 else number


def _qty(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        _fail("wrong_type", f"must be a whole number, not {_kind(value)}")
    number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    if not number.is_finite() or number != number.to_integral_value():
        _fail("wrong_type", "must be a whole number")
    if not 1 <= number <= MAX_QTY:
        _fail("out_of_range", f"must be between 1 and {MAX_QTY}")
    return int(number)


def _text(value: object, limit: int, *, blank: bool = True, integer: bool = False) -> str:
    if integer and isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            _fail("out_of_range", "must not be negative")
        value = str(value) if value < 10**limit else "x" * (limit + 1)
    if not isinstance(value, str):
        expected = "a string or an integer" if integer else "a string"
        _fail("wrong_type", f"must be {expected}, not {_kind(value)}")
    if not blank and not value.strip():
        _fail("empty", "must not be empty")
    if len(value) > limit:
        _fail("too_long", f"must be at most {limit} characters")
    return value


def _phone(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        _fail("wrong_type", f"must be a string in E.164 format such as +14155550123, not "
              f"{_kind(value)}")
    if not _E164.fullmatch(value):
        _fail("bad_format", "must be an E.164 phone number such as +14155550123")
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str):
        _fail("wrong_type", f"must be a 3-letter ISO 4217 code, not {_kind(value)}")
    if value in ACTIVE_CURRENCIES:
        return value
    if value.upper() in ACTIVE_CURRENCIES:
        _fail("bad_format", f"must be uppercase (did you mean {value.upper()!r}?)")
    _fail("unknown_currency", "must be an active ISO 4217 currency code such as 'USD'")


def _created_at(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        if len(value) > 64 or not _HAS_TIME.search(value):
            _fail("bad_format", _DATETIME_HINT)
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            _fail("bad_format", _DATETIME_HINT)
    else:
        _fail("wrong_type", f"{_DATETIME_HINT}, not {_kind(value)}")
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.isoformat()


_MONEY_SCHEMA = {
    "description": f"at most {MAX_INTEGER_DIGITS} digits before the point and "
                   f"{MAX_DECIMAL_PLACES} after it",
    "anyOf": [{"type": "number", "minimum": 0, "exclusiveMaximum": 10**MAX_INTEGER_DIGITS},
              {"type": "string",
               "pattern": rf"^\d{{1,{MAX_INTEGER_DIGITS}}}(\.\d{{1,{MAX_DECIMAL_PLACES}}})?$"}]}
_NULLABLE_STR = {"type": ["string", "null"]}
Money = Annotated[Decimal, PlainValidator(_money), WithJsonSchema(_MONEY_SCHEMA)]
OptionalMoney = Annotated[Decimal | None, PlainValidator(lambda v: v if v is None else _money(v)),
                          WithJsonSchema(_MONEY_SCHEMA)]
Sku = Annotated[str, PlainValidator(lambda v: _text(v, 128, blank=False)),
                WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 128})]
Qty = Annotated[int, PlainValidator(_qty),
                WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_QTY})]
OrderId = Annotated[str, PlainValidator(lambda v: _text(v, 128, blank=False, integer=True)),
                    WithJsonSchema({"type": ["string", "integer"], "maxLength": 128})]
Currency = Annotated[str, PlainValidator(_currency),
                     WithJsonSchema({"type": "string", "enum": sorted(ACTIVE_CURRENCIES)})]
Name = Annotated[str | None, PlainValidator(lambda v: v if v is None else _text(v, 200)),
                 WithJsonSchema({**_NULLABLE_STR, "maxLength": 200})]
Phone = Annotated[str | None, PlainValidator(_phone),
                  WithJsonSchema({**_NULLABLE_STR, "pattern": f"^{_E164.pattern}$"})]
Timestamp = Annotated[str | None, PlainValidator(_created_at),
                      WithJsonSchema({**_NULLABLE_STR, "format": "date-time"})]


class OrderItem(BaseModel):
    """One line of an order."""

    model_config = ConfigDict(extra="allow")

    sku: Sku
    qty: Qty = 1
    price: OptionalMoney = None


class Order(BaseModel):
    """An order as POSTed by the shop; the source of truth for the schema (and OpenAPI docs)."""

    model_config = ConfigDict(extra="allow")

    order_id: OrderId
    amount: Money
    currency: Currency = "USD"
    customer_name: Name = None
    customer_phone: Phone = None
    items: Annotated[list[OrderItem], BeforeValidator(lambda v: [] if v is None else v),
                     Field(max_length=MAX_ITEMS)] = Field(default_factory=list)
    created_at: Timestamp = None


_STANDARD = {"missing": ("missing", "is required"),
             "list_type": ("wrong_type", "must be a list"),
             "model_type": ("wrong_type", "must be an object"),
             "dict_type": ("wrong_type", "must be an object")}


def _translate(exc: ValidationError) -> list[FieldError]:
    errors = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "(root)"
        kind, message = _STANDARD.get(err["type"], (err["type"], err["msg"]))
        limit = err.get("ctx", {}).get("max_length")
        if err["type"] == "too_long" and limit is not None:  # pydantic's own, on ``items``
            message = f"must have at most {limit} entries"
        errors.append(FieldError(field=field, message=message, type=kind))
    return errors


def _dump(model: BaseModel) -> dict[str, Any]:
    """The model's fields in declared order, then its extra fields (a model keeps the fields
    in its ``__dict__``; reading that is several times cheaper than a getattr per field)."""
    out = dict(model.__dict__)
    extra = model.__pydantic_extra__
    if extra:
        out.update(extra)
    return out


def validate_order(data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a parsed order and return it normalised; raise :class:`ValidationFailed`."""
    if not isinstance(data, Mapping):
        raise ValidationFailed([FieldError("(root)", "must be an object", "wrong_type")])
    try:
        order = Order.model_validate(dict(data))
    except ValidationError as exc:
        raise ValidationFailed(_translate(exc)) from None
    out = _dump(order)
    out["items"] = [_dump(item) for item in order.items]
    return out


__all__ = ["ACTIVE_CURRENCIES", "Order", "OrderItem", "validate_order"]

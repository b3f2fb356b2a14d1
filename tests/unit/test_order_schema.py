"""Tests of the order schema and its error messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertpipe.errors import FieldError, ValidationFailed
from alertpipe.jsoncodec import dumps
from alertpipe.schemas import SCHEMAS, Order, get_schema, validate_order
from alertpipe.sources.jsonparse import parse_json_object

BASE: dict[str, Any] = {"order_id": "A-1", "amount": "349.99"}


def errors_of(data: Any) -> dict[str, FieldError]:
    with pytest.raises(ValidationFailed) as info:
        validate_order(data)
    assert "https://" not in str(info.value)
    return {error.field: error for error in info.value.errors}


def test_minimal_order_is_normalised_with_every_known_key() -> None:
    assert validate_order(BASE) == {
        "order_id": "A-1", "amount": Decimal("349.99"), "currency": "USD",
        "customer_name": None, "customer_phone": None, "items": [], "created_at": None,
    }


def test_full_order_keeps_extras_and_item_extras() -> None:
    data = {**BASE, "customer_name": "Ada", "customer_phone": "+14155550123", "currency": "EUR",
            "items": [{"sku": "S1", "qty": 2, "price": Decimal("10.50"), "colour": "red"}],
            "created_at": "2024-05-01T12:30:00+02:00", "channel": {"src": "shop"}}
    out = validate_order(data)
    assert out["items"] == [{"sku": "S1", "qty": 2, "price": Decimal("10.50"), "colour": "red"}]
    assert out["channel"] == {"src": "shop"}
    assert out["created_at"] == "2024-05-01T10:30:00+00:00"


def test_integer_order_id_beyond_2_53_stays_exact() -> None:
    assert validate_order({**BASE, "order_id": 2**53 + 1})["order_id"] == "9007199254740993"


@pytest.mark.parametrize(("value", "expected"), [
    (349, Decimal("349")), (Decimal("300.00"), Decimal("300.00")), ("0.10", Decimal("0.10")),
    (0.1, Decimal("0.1")), (Decimal("1E+3"), Decimal("1000")), ("-0", Decimal("0")),
    (Decimal("999999999999999999.999999"), Decimal("999999999999999999.999999")),
])
def test_amount_is_exact_decimal(value: Any, expected: Decimal) -> None:
    amount = validate_order({**BASE, "amount": value})["amount"]
    assert type(amount) is Decimal
    assert str(amount) == str(expected)


@pytest.mark.parametrize(("value", "fragment"), [
    (True, "not a boolean"), (None, "not null"), ([1], "not a list"), ("abc", "numeric string"),
    ("1e3", "numeric string"), (" 1", "numeric string"), (-1, "must not be negative"),
    (Decimal("NaN"), "finite"), (float("inf"), "finite"), (Decimal("1E+18"), "18 digits"),
    (Decimal("0.0000001"), "6 decimal places"),
    pytest.param(10**5000, "18 digits", id="5001-digit-int"),
])
def test_bad_amounts(value: Any, fragment: str) -> None:
    assert fragment in errors_of({**BASE, "amount": value})["amount"].message


def test_every_error_is_listed_with_a_dotted_path() -> None:
    found = errors_of({"amount": True, "currency": "usd", "customer_phone": 14155550123,
                       "customer_name": 7, "created_at": "yesterday",
                       "items": [{"qty": True, "price": "x"}, 5, {"sku": "", "qty": 2.5}]})
    assert found["order_id"].type == "missing"
    assert found["amount"].message == "must be a number or numeric string, not a boolean"
    assert "did you mean 'USD'" in found["currency"].message
    assert "E.164" in found["customer_phone"].message
    assert found["customer_name"].message == "must be a string, not a number"
    assert "ISO 8601" in found["created_at"].message
    assert found["items.0.sku"].type == "missing"
    assert found["items.0.qty"].message == "must be a whole number, not a boolean"
    assert found["items.0.price"].type == "bad_format"
    assert found["items.1"].message == "must be an object"
    assert found["items.2.sku"].message == "must not be empty"
    assert found["items.2.qty"].message == "must be a whole number"
    assert len(found) == 12


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("order_id", "  ", "must not be empty"), ("order_id", "x" * 129, "at most 128"),
    ("order_id", -3, "negative"), ("order_id", 1.5, "string or an integer"),
    ("order_id", 10**200, "at most 128"), ("customer_name", "n" * 201, "at most 200"),
    ("customer_phone", "+0123", "E.164"), ("customer_phone", "4155550123", "E.164"),
    ("currency", "XYZ", "ISO 4217"), ("currency", "XAU", "ISO 4217"), ("currency", None, "null"),
    ("items", {"sku": "a"}, "must be a list"), ("items", [{"sku": "a"}] * 1001, "at most 1000"),
    ("created_at", "2024-05-01", "date and time"), ("created_at", "2024-13-01T00:00", "ISO"),
    ("created_at", 1714567890, "not a number"),
])
def test_field_rules(field: str, value: Any, fragment: str) -> None:
    assert fragment in errors_of({**BASE, field: value})[field].message


def test_qty_rules() -> None:
    assert validate_order({**BASE, "items": [{"sku": "a"}]})["items"][0]["qty"] == 1
    assert validate_order({**BASE, "items": [{"sku": "a", "qty": Decimal("2.0")}]})[
        "items"][0]["qty"] == 2
    for bad in (0, -1, 1_000_001, "2", Decimal("sNaN"), float("nan")):
        assert "items.0.qty" in errors_of({**BASE, "items": [{"sku": "a", "qty": bad}]})


def test_null_phone_and_null_items_are_allowed() -> None:
    out = validate_order({**BASE, "customer_phone": None, "items": None})
    assert out["customer_phone"] is None
    assert out["items"] == []


def test_created_at_naive_is_kept_naive_and_datetimes_are_accepted() -> None:
    assert validate_order({**BASE, "created_at": "2024-05-01 12:30"})["created_at"] == (
        "2024-05-01T12:30:00")
    moment = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert validate_order({**BASE, "created_at": moment})["created_at"] == (
        "2024-05-01T17:00:00+00:00")
    assert validate_order({**BASE, "created_at": "2024-05-01T12:30:00Z"})["created_at"] == (
        "2024-05-01T12:30:00+00:00")


def test_braces_in_input_are_not_a_template() -> None:
    assert "ISO 8601" in errors_of({**BASE, "created_at": "{message} {x}"})["created_at"].message


def test_non_mapping_is_refused() -> None:
    assert errors_of([1, 2])["(root)"].message == "must be an object"


def test_registry_and_json_schema() -> None:
    assert SCHEMAS["order"] is validate_order
    assert get_schema("order") is validate_order
    with pytest.raises(Exception, match="unknown schema 'nope'"):
        get_schema("nope")
    schema = Order.model_json_schema()
    assert schema["required"] == ["order_id", "amount"]
    assert "USD" in schema["properties"]["currency"]["enum"]


money = st.decimals(min_value=0, max_value=Decimal("999999999999999999"), places=2,
                    allow_nan=False, allow_infinity=False) | st.integers(0, 10**18 - 1)
items = st.lists(st.fixed_dictionaries(
    {"sku": st.text(min_size=1, max_size=20).filter(str.strip), "qty": st.integers(1, 1000),
     "price": money}), max_size=3)
orders = st.fixed_dictionaries(
    {"order_id": st.integers(0, 10**30) | st.text(min_size=1, max_size=40).filter(str.strip),
     "amount": money},
    optional={"currency": st.sampled_from(["USD", "EUR", "JPY", "GBP"]), "items": items,
              "customer_name": st.text(max_size=50) | st.none(),
              "customer_phone": st.from_regex(r"\+[1-9]\d{1,14}", fullmatch=True) | st.none(),
              "created_at": st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
              "note": st.text(max_size=10)})


@settings(max_examples=200)
@given(orders)
def test_valid_orders_validate_and_round_trip(order: dict[str, Any]) -> None:
    out = validate_order(order)
    again = validate_order(parse_json_object(dumps(out).encode()))
    assert type(again["amount"]) is Decimal
    assert str(again["amount"]) == str(out["amount"])
    assert again == out


json_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    | st.decimals() | st.datetimes(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10,
)
fields = st.sampled_from(["order_id", "amount", "currency", "customer_name", "customer_phone",
                          "items", "created_at"])


@settings(max_examples=300)
@given(st.dictionaries(fields, json_ish))
def test_arbitrary_values_only_ever_raise_validation_failed(data: dict[str, Any]) -> None:
    try:
        out = validate_order(data)
    except ValidationFailed as exc:
        assert exc.errors
        assert all(error.field and error.message for error in exc.errors)
    else:
        assert type(out["amount"]) is Decimal

"""A source's cursor (the highest `cursor_field` value a run read) as text that can be stored: JSON
that decodes to the same Python value (a datetime stays a datetime, so it binds as one). Where it is
stored, and when, is kbflow.tasks.sources.sql_cursor's business."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def encode_cursor(value: Any) -> str:
    """A cursor value as JSON that decodes to the same Python value (and so binds with the same type)."""
    if isinstance(value, datetime):
        return json.dumps({"type": "datetime", "value": value.isoformat()})
    if isinstance(value, date):
        return json.dumps({"type": "date", "value": value.isoformat()})
    if isinstance(value, Decimal):
        return json.dumps({"type": "decimal", "value": str(value)})
    return json.dumps({"type": "json", "value": value})


def decode_cursor(text: str) -> Any:
    """The value encode_cursor encoded."""
    cursor = json.loads(text)
    decode = {"datetime": datetime.fromisoformat, "date": date.fromisoformat, "decimal": Decimal}
    return decode.get(cursor["type"], lambda value: value)(cursor["value"])

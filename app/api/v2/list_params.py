"""`GET /v2/images` query string -> ImageListQuery, with Glance's 400 messages."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import cast
from urllib.parse import urlencode

from app.config import LimitSettings
from app.errors import BadRequest
from app.images.attributes import MEMBER_STATUSES, VISIBILITIES
from app.images.query import EXACT_FILTERS, SORT_KEYS, ImageListQuery, SortDir, TimeOp

_TIME_OPS = ("gt", "gte", "eq", "neq", "lt", "lte")
# What every database's BIGINT holds; a bound beyond it would overflow the driver, not filter.
_INT64 = range(-(2**63), 2**63)
_OUT_OF_RANGE = "it is beyond the 64-bit integer range."
_RESERVED_PARAMS = frozenset(
    {
        "limit",
        "marker",
        "sort",
        "sort_key",
        "sort_dir",
        "member_status",
        "visibility",
        "size_min",
        "size_max",
        "tag",
        "os_hidden",
        "protected",
        "created_at",
        "updated_at",
    }
)


def _split_in(name: str, value: str) -> list[str]:
    """`a,b,"c,d"` -> [a, b, c,d] (Glance uses the csv module for the same)."""
    try:
        return next(csv.reader([value], skipinitialspace=True))
    except csv.Error:
        # A line break outside quotes: Glance fails with a 500 here.
        raise BadRequest(f"Invalid value for '{name}': it is not a comma-separated list.") from None


def _exact_values(name: str, value: str) -> list[str]:
    if ":" not in value:
        return [value]
    op, _, rest = value.partition(":")
    if op == "in":
        return _split_in(name, rest)
    if op == "eq":
        return [rest]
    raise BadRequest(f"Unable to filter by unknown operator '{op}'.")


def _boolean(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise BadRequest(
            f"Invalid value '{value}' for '{name}' filter. Valid values are 'true' or 'false'."
        )
    return value == "true"


def _size(name: str, value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        raise BadRequest("Unable to filter on a range with a non-numeric value.") from None
    if size not in _INT64:
        raise BadRequest(f"Invalid value for '{name}': {_OUT_OF_RANGE}")
    return size


def _moment(name: str, value: str) -> tuple[TimeOp, datetime]:
    op, sep, rest = value.partition(":")
    if sep and op in _TIME_OPS:
        text = rest
    else:
        op, text = "eq", value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    # OverflowError: a time in the year 1 east of UTC is in the year 0.
    except (ValueError, OverflowError):
        raise BadRequest(
            f'Bad "{name}" query filter format. Use ISO 8601 DateTime notation.'
        ) from None
    return cast(TimeOp, op), moment


def limit(params: list[tuple[str, str]], limits: LimitSettings) -> int:
    values = [v for k, v in params if k == "limit"]
    if not values:
        return limits.limit_param_default
    try:
        limit = int(values[-1])
    except ValueError:
        raise BadRequest("limit param must be an integer") from None
    if limit < 0:
        raise BadRequest("limit param must be positive")
    if limit not in _INT64:
        # Harmless once capped to api_limit_max, but refused like size_min's: no integer
        # parameter accepts what no database column could hold.
        raise BadRequest(f"Invalid value for 'limit': {_OUT_OF_RANGE}")
    return min(limit, limits.api_limit_max)


def _sort(params: list[tuple[str, str]]) -> list[tuple[str, SortDir]]:
    sort = [v for k, v in params if k == "sort"]
    keys = [v for k, v in params if k == "sort_key"]
    dirs = [v for k, v in params if k == "sort_dir"]
    if sort and (keys or dirs):
        raise BadRequest("Old and new sorting syntax cannot be combined")
    pairs: list[tuple[str, str]] = []
    if sort:
        for item in ",".join(sort).split(","):
            key, _, direction = item.strip().partition(":")
            pairs.append((key.strip(), direction.strip() or "desc"))
    else:
        if len(dirs) > 1 and len(dirs) != len(keys):
            raise BadRequest("Number of sort dirs does not match the number of sort keys")
        default_dir = dirs[0] if len(dirs) == 1 else "desc"
        pairs = [(key, dirs[i] if len(dirs) > 1 else default_dir) for i, key in enumerate(keys)]
        if not keys and dirs:
            pairs = [("created_at", default_dir)]
    for key, direction in pairs:
        if key not in SORT_KEYS:
            raise BadRequest(
                f"Invalid sort key: {key}. It must be one of the following: {', '.join(SORT_KEYS)}."
            )
        if direction not in ("asc", "desc"):
            raise BadRequest(f"Invalid sort direction: {direction}")
    if not pairs:
        return [("created_at", "desc")]
    return [(key, cast(SortDir, direction)) for key, direction in pairs]


def parse(params: list[tuple[str, str]], limits: LimitSettings) -> ImageListQuery:
    query = ImageListQuery(limit=limit(params, limits), sort=_sort(params))
    for name, value in params:
        if name == "marker":
            query.marker = value
        elif name == "visibility":
            if value not in (*VISIBILITIES, "all"):
                raise BadRequest(f"Invalid visibility value: {value}")
            query.visibility = value
        elif name == "member_status":
            if value not in (*MEMBER_STATUSES, "all"):
                raise BadRequest(f"Invalid status value: {value}")
            query.member_status = value
        elif name in ("size_min", "size_max"):
            setattr(query, name, _size(name, value))
        elif name == "tag":
            query.tags.append(value)
        elif name == "os_hidden":
            # Glance lower-cases this one (openstacksdk's find_image sends `os_hidden=True`).
            query.os_hidden = _boolean(name, value.lower())
        elif name == "protected":
            query.protected = _boolean(name, value)
        elif name in ("created_at", "updated_at"):
            query.times.append((name, *_moment(name, value)))
        elif name == "changes-since":
            raise BadRequest("The parameter changes-since is no longer available on v2.")
        elif name in EXACT_FILTERS:
            query.exact[name] = _exact_values(name, value)
        elif name not in _RESERVED_PARAMS:
            query.properties[name] = _exact_values(name, value)
    return query


# The query string in OpenAPI terms: what `parse` accepts, as precisely as a schema can say it.
_EXACT_VALUE = {
    "type": "string",
    # A colon introduces an operator, and only `in:` and `eq:` exist; an `in:` list is one CSV
    # line, so it has no line breaks outside quotes (none at all, as a schema can say it).
    "pattern": "^(in:[^\r\n]*|eq:.*|[^:]*)$",
}
# ISO 8601 as datetime.fromisoformat reads it, the year 1 onwards, each month's days, and the
# 29th of February in leap years only (Gregorian: every fourth year but centuries not divisible
# by 400).
_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP_YEAR = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_TIME_VALUE = {
    "type": "string",
    "pattern": (
        "^((gt|gte|eq|neq|lt|lte):)?"
        f"({_YEAR}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)"
        f"|02-(0[1-9]|1[0-9]|2[0-8]))|{_LEAP_YEAR}-02-29)"
        "(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
        "(Z|[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9])?)?$"
    ),
}
_INT64_VALUE = {"type": "integer", "minimum": _INT64.start, "maximum": _INT64.stop - 1}
# Sent as `true`/`false`, as generated clients send a boolean.
_BOOLEAN_VALUE = {"type": "boolean"}


def query_parameter(name: str, schema: Mapping[str, object], description: str) -> dict[str, object]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _repeatable(name: str, items: Mapping[str, object], description: str) -> dict[str, object]:
    return {
        **query_parameter(name, {"type": "array", "items": items}, description),
        "style": "form",
        "explode": True,
    }


OPENAPI_PARAMETERS = [
    query_parameter(
        "limit",
        {"type": "integer", "minimum": 0, "maximum": _INT64.stop - 1},
        "Page size (default limits.limit_param_default, capped at limits.api_limit_max).",
    ),
    query_parameter("marker", {"type": "string"}, "Id of the last image of the previous page."),
    query_parameter(
        "sort",
        {
            "type": "string",
            "pattern": f"^ *({'|'.join(SORT_KEYS)}) *(: *(asc|desc) *)?"
            f"(, *({'|'.join(SORT_KEYS)}) *(: *(asc|desc) *)?)*$",
        },
        "`key[:dir],...` (dir `asc` or `desc`, default `desc`); not with sort_key/sort_dir.",
    ),
    _repeatable(
        "sort_key",
        {"type": "string", "enum": list(SORT_KEYS)},
        "Legacy sort syntax: one or more keys (default created_at).",
    ),
    _repeatable(
        "sort_dir",
        {"type": "string", "enum": ["asc", "desc"]},
        "Legacy sort syntax: one direction for every key, or one per key.",
    ),
    *(
        query_parameter(
            name,
            _EXACT_VALUE,
            f'Images whose {name} is the value; `in:a,b,"c,d"` for any of several '
            "(quoted as CSV); `eq:` for a value that contains a colon.",
        )
        for name in EXACT_FILTERS
    ),
    query_parameter(
        "visibility",
        {"type": "string", "enum": [*VISIBILITIES, "all"]},
        "Only images of this visibility (default: all but community images of others).",
    ),
    query_parameter(
        "member_status",
        {"type": "string", "enum": [*MEMBER_STATUSES, "all"]},
        "Shared images by the caller's membership status (default accepted).",
    ),
    query_parameter("size_min", _INT64_VALUE, "Images of at least this many bytes."),
    query_parameter("size_max", _INT64_VALUE, "Images of at most this many bytes."),
    _repeatable("tag", {"type": "string"}, "Images carrying every one of these tags."),
    query_parameter(
        "os_hidden",
        _BOOLEAN_VALUE,
        "Hidden images instead of visible ones (default false; any case, as Glance).",
    ),
    query_parameter("protected", _BOOLEAN_VALUE, "Only protected, or only unprotected, images."),
    *(
        query_parameter(
            name,
            _TIME_VALUE,
            f"Compare {name} with an ISO 8601 time: `[op:]time`, op one of "
            f"{', '.join(_TIME_OPS)} (default eq).",
        )
        for name in ("created_at", "updated_at")
    ),
]


def page_links(
    path: str, params: list[tuple[str, str]], last_id: str | None, *, full: bool
) -> dict[str, str]:
    """A list's `first` link, and its `next` one after a full page: the query as sent (every
    repeated parameter kept), without its marker, then with the last item's id as marker."""
    without_marker = [(key, value) for key, value in params if key != "marker"]
    links = {"first": path + (f"?{urlencode(without_marker)}" if without_marker else "")}
    if full and last_id is not None:
        links["next"] = f"{path}?{urlencode([*without_marker, ('marker', last_id)])}"
    return links

"""Image locations as Glance lets clients manage them: JSON-patch of `/locations` (with
`show_multiple_locations`), the add-location API, and the order in which locations are read.

A location a client names is checked before any transaction starts (`probe`: a configured store
holds it and has the object), then the changes are applied to a working copy of the image's
locations (`LocationEdit`) with Glance's rules, in Glance's order of checks.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.errors import BadRequest, Conflict, Forbidden, PayloadTooLarge, ServiceUnavailable
from app.images.models import Image, ImageLocation
from app.images.status import ImageStatus
from app.storage.errors import ObjectNotFound, StoreError, StoreUnavailable, UnknownStore
from app.storage.registry import StoreRegistry

log = logging.getLogger(__name__)

# Never accepted from a client (Glance's RESTRICTED_URI_SCHEMAS): they would point an image at
# the service's own files or at credentials in its configuration.
RESTRICTED_SCHEMES = frozenset({"file", "filesystem", "swift+config"})
# What validation data may set on an image, in Glance's order.
VALIDATION_KEYS = ("checksum", "os_hash_algo", "os_hash_value")


class LocationsHidden(Forbidden):
    def __init__(self, doing: str):
        super().__init__(f"It's not allowed to {doing} locations if locations are invisible.")


class LocationsLocked(Conflict):
    def __init__(self, doing: str, status: str):
        super().__init__(f"It's not allowed to {doing} locations if image status is {status}.")


class LastLocation(Forbidden):
    def __init__(self) -> None:
        super().__init__("Cannot remove last location in the image.")


class NoLocations(Forbidden):
    def __init__(self) -> None:
        super().__init__("Cannot set locations to empty list.")


class InvalidLocation(BadRequest):
    def __init__(self) -> None:
        super().__init__("Invalid location")


class DuplicateLocation(BadRequest):
    def __init__(self, url: str):
        super().__init__(f"The location {url} already exists")


class InvalidPosition(BadRequest):
    def __init__(self, doing: str):
        super().__init__(f"Invalid position for {doing} a location.")


class LocationsNotReplaceable(BadRequest):
    def __init__(self, locations: Sequence[ImageLocation]):
        shown = [{"url": row.url, "metadata": row.location_metadata} for row in locations]
        super().__init__(f"Original locations is not empty: {shown}")


class LocationQuotaExceeded(PayloadTooLarge):
    def __init__(self, attempted: int, maximum: int):
        super().__init__(
            "The limit has been exceeded on the number of allowed image locations. "
            f"Attempted: {attempted}, Maximum: {maximum}"
        )


class ValidationDataConflict(Conflict):
    pass


class InvalidHash(BadRequest):
    pass


class StoreNotAvailable(ServiceUnavailable):
    def __init__(self) -> None:
        super().__init__("The store holding the location could not be reached.")


@dataclass(frozen=True)
class NewLocation:
    url: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # checksum, os_hash_algo and os_hash_value the image must have (or gets, when queued).
    validation_data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AddLocation:
    """`add /locations/<position>`: an index, or `-` for the end."""

    position: str
    location: NewLocation


@dataclass(frozen=True)
class RemoveLocation:
    position: str


@dataclass(frozen=True)
class ReplaceLocations:
    locations: tuple[NewLocation, ...]


LocationChange = AddLocation | RemoveLocation | ReplaceLocations
# How Glance's messages name each change.
_DOING: dict[type[LocationChange], str] = {
    AddLocation: "add",
    RemoveLocation: "remove",
    ReplaceLocations: "update",
}


def require_enabled(enabled: bool, change: LocationChange) -> None:
    """Locations change only where they are shown (`show_multiple_locations`)."""
    if not enabled:
        raise LocationsHidden(_DOING[type(change)])


def named_urls(changes: Iterable[object]) -> list[str]:
    """The URLs that location changes name, in order, each once."""
    urls: dict[str, None] = {}
    for change in changes:
        if isinstance(change, AddLocation):
            urls[change.location.url] = None
        elif isinstance(change, ReplaceLocations):
            urls.update((location.url, None) for location in change.locations)
    return list(urls)


@dataclass(frozen=True)
class ProbedLocation:
    store_id: str
    size: int


def store_of(stores: StoreRegistry, url: str) -> str | None:
    """The configured store holding `url`, if a client may name it; None otherwise."""
    if urlsplit(url).scheme in RESTRICTED_SCHEMES:
        return None
    try:
        return stores.for_location(url).store_id
    except UnknownStore:
        return None


async def probe(stores: StoreRegistry, urls: Iterable[str]) -> dict[str, ProbedLocation | None]:
    """Each URL's store and object size; None for a URL Glance calls an invalid location (not
    a store's, restricted, no object, or an empty one). Raises StoreNotAvailable when a store
    cannot answer: that is no verdict on the location."""
    probed: dict[str, ProbedLocation | None] = {}
    for url in urls:
        store_id = store_of(stores, url)
        probed[url] = None
        if store_id is None:
            continue
        try:
            size = await stores.get(store_id).stat(url)
        except ObjectNotFound:
            continue
        except StoreUnavailable as error:
            log.warning("stat of a location in store %s failed: %s", store_id, redact(error, url))
            raise StoreNotAvailable() from error
        except StoreError:
            continue
        if size > 0:
            probed[url] = ProbedLocation(store_id, size)
    return probed


def by_weight(
    locations: Sequence[ImageLocation], weight: Callable[[str], int]
) -> list[ImageLocation]:
    """Heaviest store first; the image's own order among equals (the sort is stable)."""
    return sorted(locations, key=lambda location: -weight(location.store_id))


def without_userinfo(url: str) -> str:
    """`url` without credentials (`swift://user:key@host/...` -> `swift://host/...`)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def redact(error: BaseException, url: str) -> str:
    """An error's message, fit for a log: the location's credentials never appear."""
    return str(error).replace(url, without_userinfo(url))


def _hex_bytes(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def check_hashing_data(validation_data: Mapping[str, str], default_algorithm: str) -> None:
    """The add-location API's validation data (400s, as Glance's `_validate_hashing_data`)."""
    if "os_hash_value" not in validation_data:
        return
    value = validation_data["os_hash_value"]
    digest = _hex_bytes(value)
    if digest is None:
        raise InvalidHash(f"os_hash_value ({value}) is not a valid hexadecimal value")
    algorithm = validation_data.get("os_hash_algo", default_algorithm)
    want = hashlib.new(algorithm).digest_size
    if len(digest) != want:
        raise InvalidHash(
            f"os_hash_value: ({value}) is not the correct size for ({algorithm}) "
            f"(should be ({want}) bytes)"
        )


def _new_validation_values(
    facts: Mapping[str, Any],
    status: ImageStatus,
    locations: Iterable[NewLocation],
    hash_algorithm: str,
) -> dict[str, str]:
    """What the locations' validation data would set on the image (Glance's
    `_validate_validation_data`): values the image already has must match, new ones may only
    be given while it is queued, and must be well-formed."""
    given: dict[str, str] = {}
    for location in locations:
        for key, value in location.validation_data.items():
            if given.get(key, value) != value:
                raise ValidationDataConflict(f"Conflicting values for {key}")
            given[key] = value
    new: dict[str, str] = {}
    for key, value in given.items():
        current = facts.get(key)
        if value == current:
            continue
        if current:
            raise ValidationDataConflict(f"{key} is already set with a different value")
        new[key] = value
    if not new:
        return {}
    if status != ImageStatus.QUEUED:
        raise ValidationDataConflict(
            f"New value(s) for {', '.join(new)} may only be provided when image status is 'queued'"
        )
    if "checksum" in new:
        checksum = _hex_bytes(new["checksum"])
        if checksum is None:
            raise ValidationDataConflict(
                f"checksum ({new['checksum']}) is not a valid hexadecimal value"
            )
        if len(checksum) != 16:
            raise ValidationDataConflict(
                f"checksum ({new['checksum']}) is not the correct size for md5 (should be 16 bytes)"
            )
    algorithm = new.get("os_hash_algo")
    if algorithm != hash_algorithm:
        raise ValidationDataConflict(f"os_hash_algo must be {hash_algorithm}, not {algorithm}")
    if "os_hash_value" in new:
        value = new["os_hash_value"]
        digest = _hex_bytes(value)
        if digest is None:
            raise ValidationDataConflict(
                f"os_hash_value ({value}) is not a valid hexadecimal value"
            )
        want = hashlib.new(algorithm).digest_size
        if len(digest) != want:
            raise ValidationDataConflict(
                f"os_hash_value ({value}) is not the correct size for {algorithm} "
                f"(should be {want} bytes)"
            )
    return new


def _position(path_position: str, count: int, *, adding: bool) -> int | None:
    """Glance's `_get_locations_op_pos`: `-` is the end (the last one when removing)."""
    if path_position.isdigit():
        position = int(path_position)
    elif path_position == "-":
        position = count if adding else count - 1
    else:
        return None
    if not adding and not 0 <= position < count:
        return None
    return position


class LocationEdit:
    """One PATCH's location changes, applied in order to a working copy of the image's active
    locations and data facts; the caller saves the outcome."""

    def __init__(
        self,
        image: Image,
        locations: Sequence[ImageLocation],
        probed: Mapping[str, ProbedLocation | None],
        *,
        enabled: bool,
        quota: int,
        hash_algorithm: str,
    ):
        self.image_id = image.id
        self.status = image.status
        self.facts: dict[str, Any] = {
            key: getattr(image, key) for key in (*VALIDATION_KEYS, "size")
        }
        self.locations = list(locations)
        self.removed: list[ImageLocation] = []
        self.probed = probed
        self.enabled = enabled
        self.quota = quota
        self.hash_algorithm = hash_algorithm

    def apply(self, change: LocationChange) -> None:
        require_enabled(self.enabled, change)
        if isinstance(change, AddLocation):
            self._add(change)
        elif isinstance(change, RemoveLocation):
            self._remove(change)
        else:
            self._replace(change)

    # --- the three operations ----------------------------------------------------------------

    def _add(self, change: AddLocation) -> None:
        self._check_status("add", (ImageStatus.ACTIVE, ImageStatus.QUEUED))
        values = _new_validation_values(
            self.facts, self.status, [change.location], self.hash_algorithm
        )
        position = _position(change.position, len(self.locations), adding=True)
        if position is None:
            raise InvalidPosition("adding")
        self._check_quota(len(self.locations) + 1)
        row = self._checked_row(change.location)
        if any(self._same(existing, row) for existing in self.locations):
            raise DuplicateLocation(row.url)
        self.locations.insert(position, row)
        self._take_size([row])
        self._activate(values)

    def _remove(self, change: RemoveLocation) -> None:
        self._check_status("remove", (ImageStatus.ACTIVE,))
        if len(self.locations) == 1:
            raise LastLocation()
        position = _position(change.position, len(self.locations), adding=False)
        if position is None:
            raise InvalidPosition("removing")
        self.removed.append(self.locations.pop(position))

    def _replace(self, change: ReplaceLocations) -> None:
        self._check_status("replace", (ImageStatus.ACTIVE, ImageStatus.QUEUED))
        values = _new_validation_values(
            self.facts, self.status, change.locations, self.hash_algorithm
        )
        self._check_quota(len(change.locations))
        current = sorted(row.url for row in self.locations)
        wanted = sorted(location.url for location in change.locations)
        if current == wanted:
            # The same URLs: only their metadata (and order) change.
            by_url = {row.url: row for row in self.locations}
            for location in change.locations:
                by_url[location.url].location_metadata = dict(location.metadata)
            self.locations = [by_url[location.url] for location in change.locations]
        else:
            if self.locations:
                raise LocationsNotReplaceable(self.locations)
            rows = [self._checked_row(location) for location in change.locations]
            for row in rows:
                if sum(self._same(other, row) for other in rows) > 1:
                    raise DuplicateLocation(row.url)
            self.locations = rows
            self._take_size(rows)
        self._activate(values)

    # --- rules ---------------------------------------------------------------------------------

    def _check_status(self, doing: str, statuses: tuple[ImageStatus, ...]) -> None:
        if self.status not in statuses:
            raise LocationsLocked(doing, self.status)

    def _check_quota(self, attempted: int) -> None:
        if 0 <= self.quota < attempted:
            raise LocationQuotaExceeded(attempted, self.quota)

    def _checked_row(self, location: NewLocation) -> ImageLocation:
        probed = self.probed.get(location.url)
        if probed is None:
            raise InvalidLocation()
        return ImageLocation(
            image_id=self.image_id,
            store_id=probed.store_id,
            url=location.url,
            location_metadata=dict(location.metadata),
        )

    @staticmethod
    def _same(one: ImageLocation, other: ImageLocation) -> bool:
        return one.url == other.url and one.location_metadata == other.location_metadata

    def _take_size(self, rows: Sequence[ImageLocation]) -> None:
        """An image without a size takes its first new location's (Glance assumes all
        locations hold the same bytes)."""
        if not self.facts["size"] and rows:
            probed = self.probed[rows[0].url]
            assert probed is not None, "rows are made from probed locations only"
            self.facts["size"] = probed.size

    def _activate(self, values: Mapping[str, str]) -> None:
        if self.status == ImageStatus.QUEUED:
            self.facts.update(values)
            self.status = ImageStatus.ACTIVE

"""Settings: one validated object, read once by `create_app` and the CLI.

Sources, strongest first: environment variables `GLINT_<GROUP>__<FIELD>`, then the TOML file
named by `GLINT_CONFIG` (same groups as tables), then the defaults below.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from app.net import canonical_host, ssl_context

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")


class _Group(BaseModel):
    """A settings table: a key it does not know is a typo, refused at start-up by name."""

    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Group):
    # Empty means the embedded default: SQLite inside the data directory.
    url: str = ""
    echo: bool = False
    pool_size: int = Field(default=10, ge=1)

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, url: str) -> str:
        if url and url.split("://", 1)[0].split("+", 1)[0] not in ("sqlite", "postgresql", "mysql"):
            raise ValueError("must be a sqlite://, postgresql:// or mysql:// URL")
        return url


class AuthSettings(_Group):
    """Identity: `noauth` trusts Keystone-style headers and falls back to a default identity."""

    strategy: Literal["noauth"] = "noauth"
    default_project_id: str = "admin"
    default_user_id: str = "admin"
    # From the environment as `a,b` (or a JSON list); NoDecode stops pydantic-settings from
    # requiring JSON for this list.
    default_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["admin", "member", "reader"]
    )

    @field_validator("default_roles", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [role.strip() for role in value.split(",") if role.strip()]
        return value


class ImageFormatSettings(_Group):
    disk_formats: list[str] = Field(default_factory=lambda: list(DISK_FORMATS))
    container_formats: list[str] = Field(default_factory=lambda: list(CONTAINER_FORMATS))


class LimitSettings(_Group):
    """Glance's legacy quotas and API limits; the names match Glance's options."""

    limit_param_default: int = Field(default=25, ge=1)
    api_limit_max: int = Field(default=1000, ge=1)
    image_property_quota: int = 128
    image_tag_quota: int = 128
    image_member_quota: int = 128
    max_request_id_length: int = Field(default=64, ge=1)
    max_header_line: int = Field(default=16384, ge=1024)
    max_json_body: int = Field(default=1024 * 1024, ge=1024)
    image_size_cap: int = Field(default=1 << 40, ge=1)
    image_location_quota: int = Field(default=10, ge=1)


class _StoreBase(_Group):
    """What every store has, whatever its type."""

    # Shown by `GET /v2/info/stores`.
    description: str | None = None
    # Reads prefer the locations of heavier stores (Glance's `weight`); `direct_url` names one.
    weight: int = 0
    # Bytes per read when streaming an object out; large reads are what make downloads fast.
    read_chunk_size: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)


# A CA bundle's path, or whether to verify TLS certificates at all.
TlsVerify = bool | Path


class FileStoreSettings(_StoreBase):
    """A directory on a local (or shared) file system."""

    type: Literal["file"] = "file"
    # Default: <data_dir>/images
    path: Path | None = None
    # fsync before an object becomes visible (off only for throwaway test stores).
    fsync: bool = True

    def directory(self, data_dir: Path) -> Path:
        return self.path if self.path is not None else data_dir / "images"


class SwiftStoreSettings(_StoreBase):
    """An OpenStack Swift container, reached in one of three ways:

    - `auth_version = "1"`: Swift's own v1 auth (tempauth, swauth) with `auth_url`, `user`, `key`;
    - `auth_version = "3"`: Keystone v3 with `auth_url` and either `username`, `password`,
      `project_name` (and the domains) or `application_credential_id` and `..._secret`;
    - `storage_url` and `token`, already authenticated: no auth server at all.
    """

    type: Literal["swift"] = "swift"
    auth_version: Literal["1", "3"] = "1"
    auth_url: str | None = None
    # v1 auth (tempauth: "<account>:<user>").
    user: str | None = None
    key: SecretStr | None = None
    # Keystone v3.
    username: str | None = None
    password: SecretStr | None = None
    project_name: str | None = None
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    application_credential_id: str | None = None
    application_credential_secret: SecretStr | None = None
    region_name: str | None = None
    # Which catalog endpoint Keystone's object-store entry gives (public, internal, admin).
    interface: str = "public"
    # Pre-authenticated.
    storage_url: str | None = None
    token: SecretStr | None = None
    container: str = "glint"
    # Objects at least this big (and those of unknown size that grow past it) are written as
    # segments of `segment_size` plus a static large object manifest.
    large_object_size: int = Field(default=5 * 1024**3, ge=1024 * 1024)
    segment_size: int = Field(default=200 * 1024**2, ge=1024 * 1024)
    verify: TlsVerify = True
    # Seconds for any one request to Swift.
    timeout: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _one_way_in(self) -> SwiftStoreSettings:
        if self.storage_url or self.token:
            if not (self.storage_url and self.token):
                raise ValueError("storage_url and token go together")
            return self
        if not self.auth_url:
            raise ValueError("needs auth_url (or storage_url and token)")
        if self.auth_version == "1" and not (self.user and self.key):
            raise ValueError("v1 auth needs user and key")
        if self.auth_version == "3":
            application = self.application_credential_id and self.application_credential_secret
            password = self.username and self.password and self.project_name
            if not (application or password):
                raise ValueError(
                    "Keystone v3 auth needs username, password and project_name, "
                    "or application_credential_id and application_credential_secret"
                )
        return self


class S3StoreSettings(_StoreBase):
    """An S3 bucket: AWS, Ceph RGW, MinIO, Swift's s3api."""

    type: Literal["s3"] = "s3"
    endpoint_url: str | None = None
    region_name: str = "us-east-1"
    access_key: str
    secret_key: SecretStr
    bucket: str = "glint"
    addressing_style: Literal["path", "virtual", "auto"] = "auto"
    # Objects at least this big, and those of unknown size that outgrow their first part, are
    # written as a multipart upload in parts of `part_size`; smaller ones are one PUT, held in
    # memory until it is sent (hence a default far below Glance's 100 MB).
    large_object_size: int = Field(default=16 * 1024**2, ge=5 * 1024**2)
    part_size: int = Field(default=16 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    # Parts of one upload sent at once: a writer holds at most this many parts in flight plus
    # the one it is filling.
    upload_concurrency: int = Field(default=4, ge=1, le=16)
    # boto3's request checksums and response validation: "when_required" keeps S3-compatible
    # servers that do not know the newer checksum headers working across boto3 upgrades.
    checksum: Literal["when_required", "when_supported"] = "when_required"
    verify: TlsVerify = True
    timeout: float = Field(default=60.0, gt=0)


class HttpStoreSettings(_StoreBase):
    """Read-only: image data that stays at an http(s) URL, given as a location."""

    type: Literal["http"] = "http"
    verify: TlsVerify = True
    timeout: float = Field(default=60.0, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    # URLs whose host is (or resolves to) a loopback, private, link-local or otherwise
    # non-public address are refused unless this is on: a location must not reach inside the
    # network the service runs in.
    allow_private_networks: bool = False


StoreSettings = Annotated[
    FileStoreSettings | SwiftStoreSettings | S3StoreSettings | HttpStoreSettings,
    Field(discriminator="type"),
]


def _one_file_store() -> dict[str, StoreSettings]:
    return {"local": FileStoreSettings()}


class StorageSettings(_Group):
    default: str = "local"
    stores: dict[str, StoreSettings] = Field(default_factory=lambda: _one_file_store())
    # Glance's multi-store API (`/v2/info/stores`, `X-Image-Meta-Store`, the `stores` field,
    # versions 2.8 and 2.10-2.13): on by default when more than one store is configured.
    multistore: bool | None = None

    @property
    def multistore_enabled(self) -> bool:
        return self.multistore if self.multistore is not None else len(self.stores) > 1

    @model_validator(mode="after")
    def _default_exists(self) -> StorageSettings:
        if self.default not in self.stores:
            raise ValueError(f"default store {self.default!r} is not among the stores")
        return self


class LocationSettings(_Group):
    """Glance's options for exposing where image data lives. Both off by default, as OSSN-0065
    and OSSN-0090 advise: a location can name credentials-bearing hosts and lets a caller
    point an image at data that was never checked."""

    # `locations` on images and JSON-patch of `/locations`.
    show_multiple_locations: bool = False
    # `direct_url` on images: the preferred location's URL.
    show_image_direct_url: bool = False


ImportMethod = Literal["glance-direct", "web-download", "copy-image"]
IMPORT_METHODS: tuple[ImportMethod, ...] = get_args(ImportMethod)
# What web-download can fetch with, whatever allowed_schemes says.
WEB_DOWNLOAD_SCHEMES = ("http", "https")
Port = Annotated[int, Field(ge=1, le=65535)]


class ImportSettings(_Group):
    """Interoperable image import (`POST /v2/images/{id}/import`), and what web-download may
    fetch from (app/images/web_download.py).

    The filters are Glance's `[import_filtering_opts]`, with its semantics: a non-empty allow
    list is all that counts (the deny list beside it is ignored); an empty one lets through
    anything that its deny list does not name. Beyond them Glint always refuses schemes other
    than http and https, and hosts that are, or resolve to, loopback, private, link-local or
    other non-public addresses unless allowed_hosts names them (the way to allow an internal
    mirror). Every redirect is filtered again.
    """

    # Glance's `enabled_import_methods`: what `GET /v2/info/import` offers and
    # `POST .../import` accepts.
    methods: list[ImportMethod] = Field(default_factory=lambda: list(IMPORT_METHODS))
    # The schemes a URI may have; web-download can fetch over http and https only.
    allowed_schemes: list[str] = Field(default_factory=lambda: list(WEB_DOWNLOAD_SCHEMES))
    # Refused schemes, when allowed_schemes is empty.
    disallowed_schemes: list[str] = Field(default_factory=list)
    # Names or IP addresses (any spelling, [IPv6] too), compared normalised as in a URI. A
    # host named here may be, or resolve to, a private address: an internal mirror.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Refused hosts, when allowed_hosts is empty (metadata services, the cloud's own APIs).
    disallowed_hosts: list[str] = Field(default_factory=list)
    # Compared with the scheme's default port when a URI names none, so that omitting the port
    # cannot get around a deny list (Glance does not filter such URIs at all).
    allowed_ports: list[Port] = Field(default_factory=lambda: [80, 443])
    disallowed_ports: list[Port] = Field(default_factory=list)
    # Seconds without progress (resolving and connecting, or waiting for the next bytes) before
    # a download fails: a stalled server must not hold an import, and its worker, for ever.
    timeout: float = Field(default=60.0, gt=0)
    # Redirects followed (each filtered like the URI itself); one more fails the download.
    max_redirects: int = Field(default=5, ge=0)
    # TLS: certifi's CAs (true), a CA bundle's path (mirrors behind an internal CA), or no
    # verification at all (false, only for testing: anyone on the path could swap the image).
    verify: TlsVerify = True
    # Bytes per chunk handed on to hashing and the stores: large chunks keep per-chunk costs
    # low, and memory use stays a few chunks per download.
    read_chunk_size: int = Field(default=1024 * 1024, ge=64 * 1024)

    @field_validator("allowed_schemes", "disallowed_schemes")
    @classmethod
    def _lower_case_schemes(cls, schemes: list[str]) -> list[str]:
        return [scheme.strip().lower() for scheme in schemes]

    @field_validator("allowed_schemes")
    @classmethod
    def _fetchable_schemes(cls, schemes: list[str]) -> list[str]:
        unknown = [scheme for scheme in schemes if scheme not in WEB_DOWNLOAD_SCHEMES]
        if unknown:
            raise ValueError(f"web-download fetches over http and https only, not {unknown}")
        return schemes

    @field_validator("allowed_hosts", "disallowed_hosts")
    @classmethod
    def _canonical_hosts(cls, hosts: list[str]) -> list[str]:
        # ValueError names the host that is neither a name nor an address.
        return [canonical_host(host.strip()) for host in hosts]

    @field_validator("verify")
    @classmethod
    def _ca_bundle_loads(cls, verify: bool | Path) -> bool | Path:
        # Now, so that a CA bundle that cannot be read stops start-up, not the first import.
        if isinstance(verify, Path):
            try:
                ssl_context(verify)
            except OSError as error:  # ssl.SSLError too: a file that holds no certificate
                raise ValueError(f"cannot load the CA bundle {verify}: {error}") from None
        return verify


class JobSettings(_Group):
    # The embedded default runs a worker inside each API process; with separate
    # `glint worker` processes this may be turned off.
    run_in_api: bool = True
    poll_interval: float = Field(default=1.0, gt=0)
    lease_seconds: int = Field(default=300, ge=10)


class UploadSettings(_Group):
    """Uploads in progress hold a lease on their image; see app/images/uploads.py."""

    # A body that delivers no bytes for this long fails the upload (image back to `queued`).
    idle_timeout: float = Field(default=60.0, gt=0)
    # An upload renews its lease every lease_seconds / 4; one not renewed for lease_seconds
    # belongs to a dead process, and the worker recovers its image.
    lease_seconds: float = Field(default=60.0, ge=2)


class ScrubberSettings(_Group):
    """Glance's delayed delete and its scrubber (the options keep Glance's names); see
    app/images/scrubber.py."""

    # On: deleting an image with data only hides it (`pending_delete`), its bytes kept, so that
    # an operator can undo a mistaken deletion with `glint scrub --restore` until the scrubber
    # has let them go.
    delayed_delete: bool = False
    # Seconds an image stays restorable before the scrubber deletes its data: the storage a
    # deletion frees comes back this much later.
    scrub_time: float = Field(default=0.0, ge=0)
    # Seconds between the passes each worker runs while delayed_delete is on (`glint scrub`
    # runs one at once); longer means fewer scans of the image table, storage freed later.
    wakeup_time: float = Field(default=300.0, gt=0)


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def available_cpus(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> int:
    """The CPUs this process may actually use: those its affinity allows, or fewer when a
    cgroup CPU quota (a container's `--cpus`, systemd's CPUQuota) allows less; at least 1.
    A fractional quota counts up (1.5 CPUs: 2), so that the quota can be used in full."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (quota / period), the smallest along its
    cgroup's path up to the root; None when there is none (or no cgroup file system).

    cgroup v2 (unified: `cgroup.controllers` at the root) keeps it in `cpu.max` ("max 100000"
    or "<quota> <period>"); v1 in `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us` under
    the cpu controller's hierarchy. Inside a container the root is the container's own cgroup.
    """
    unified = (cgroup_root / "cgroup.controllers").is_file()
    own = _own_cgroup(proc_self_cgroup, unified)
    if unified:
        bases = [cgroup_root]
    else:
        bases = [cgroup_root / name for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu")]
    quotas = [
        quota
        for base in bases
        if base.is_dir()
        for directory in _this_and_ancestors(base, own)
        if (quota := _quota_in(directory, unified)) is not None
    ]
    return min(quotas, default=None)


def _own_cgroup(proc_self_cgroup: Path, unified: bool) -> str:
    """This process's cgroup path ("/" when unknown): the `0::<path>` line on v2, the line of
    the cpu controller on v1."""
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:  # "<hierarchy id>:<controllers>:<path>"
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if (unified and controllers == "") or (not unified and "cpu" in controllers.split(",")):
            return path or "/"
    return "/"


def _this_and_ancestors(base: Path, own: str) -> list[Path]:
    """`base/own`, its parents up to `base`, and `base`: those that exist. A path that does not
    exist under `base` (a container that sees only its own cgroup) leaves just `base`."""
    parts = [part for part in own.split("/") if part and part not in (".", "..")]
    candidates = [base.joinpath(*parts[:depth]) for depth in range(len(parts), 0, -1)]
    return [path for path in candidates if path.is_dir()] + [base]


def _quota_in(directory: Path, unified: bool) -> float | None:
    try:
        if unified:
            quota, _, period = (directory / "cpu.max").read_text().strip().partition(" ")
        else:
            quota = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        cpus = int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return cpus if cpus > 0 else None


class ServerSettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(default=9292, ge=1, le=65535)
    # API processes; one per CPU this process may use by default (each runs the app; they share
    # the database).
    workers: int = Field(default_factory=available_cpus, ge=1, le=64)
    # Used for absolute links (versions document) when set, like Glance's public_endpoint.
    public_endpoint: str | None = None
    # Seconds a client may take to send a request line and its headers, counted from connecting
    # (or from the first byte of a later request on a kept-alive connection); a slower client is
    # disconnected, so that half-sent requests cannot hold connections forever (slowloris). 30 s
    # is far more than a real client needs for a few KiB, even on a slow link; time between
    # requests is bounded separately by uvicorn's keep-alive timeout (5 s).
    header_timeout: float = Field(default=30.0, gt=0)


LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


class LoggingSettings(_Group):
    """What every Glint process logs (to standard error), and how; see app/logs.py."""

    level: LogLevel = "info"
    # `text`: one readable line per record; `json`: one JSON object per line.
    format: Literal["text", "json"] = "text"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value


class MetricsSettings(_Group):
    # `/metrics` (Prometheus); when off it answers 404 and nothing is recorded.
    enabled: bool = True


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GLINT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
        # The prefix applies to aliases too: `import_` (`import` is a keyword) is read from
        # GLINT_IMPORT__*, as its TOML table is `[import]`. Not by its name as well, which the
        # environment would then fill under a key of its own, beside the file's.
        env_prefix_target="all",
    )

    data_dir: Path = Path("glint-data")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    image_formats: ImageFormatSettings = Field(default_factory=ImageFormatSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    locations: LocationSettings = Field(default_factory=LocationSettings)
    import_: ImportSettings = Field(default_factory=ImportSettings, alias="import")
    jobs: JobSettings = Field(default_factory=JobSettings)
    uploads: UploadSettings = Field(default_factory=UploadSettings)
    scrubber: ScrubberSettings = Field(default_factory=ScrubberSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("GLINT_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'glint.db'}"


class SettingsError(Exception):
    """A setting is missing or wrong; the message names it."""


_PREFIX = "GLINT_"
# GLINT_CONFIG names the TOML file. The test-suite's own variables (GLINT_TEST_DB,
# GLINT_TEST_POSTGRES_URL, ...) share the prefix but are never settings, so that a `glint serve`
# started from the suite's environment still starts; no setting may therefore be named `test*`.
_NOT_SETTINGS = ("GLINT_CONFIG",)
_TEST_PREFIX = "GLINT_TEST_"


def _unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """GLINT_* variables that would set nothing: pydantic-settings ignores them silently.
    Names are matched as pydantic-settings does, ignoring case."""
    return sorted(
        name
        for name in environ
        if name.upper().startswith(_PREFIX)
        and name.upper() not in _NOT_SETTINGS
        and not name.upper().startswith(_TEST_PREFIX)
        and not _names_a_setting(Settings, name[len(_PREFIX) :].lower().split("__"))
    )


def _names_a_setting(annotation: Any, parts: Sequence[str]) -> bool:
    """Whether `parts` (GLINT_<A>__<B>__... split) lead to a setting inside this type."""
    if not parts:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return _names_a_setting(get_args(annotation)[0], parts)
    if origin is Union or origin is UnionType:
        return any(_names_a_setting(member, parts) for member in get_args(annotation))
    if origin is dict:  # the key is the first part, whatever it is (a store id, say)
        return _names_a_setting(get_args(annotation)[1], parts[1:])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        # Variables name a field by its alias where it has one (GLINT_IMPORT__*: `import_`).
        fields = {field.alias or name: field for name, field in annotation.model_fields.items()}
        field = fields.get(parts[0])
        return field is not None and _names_a_setting(field.annotation, parts[1:])
    return False


def load_settings() -> Settings:
    config_file = os.environ.get("GLINT_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise SettingsError(f"GLINT_CONFIG: no such file: {config_file}")
    unknown = _unknown_variables(os.environ)
    if unknown:
        raise SettingsError(
            "invalid settings: " + "; ".join(f"{name}: no such setting" for name in unknown)
        )
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"GLINT_CONFIG: malformed TOML in {config_file}: {exc}") from exc
    except ValueError as exc:  # malformed JSON in an environment variable
        raise SettingsError(f"invalid settings: {exc}") from exc


class _DefaultsOnly(Settings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def default_settings() -> Settings:
    """The built-in defaults, whatever the environment says (for generated documents)."""
    return _DefaultsOnly()

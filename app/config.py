"""Settings: one validated object, read once by `create_app` and the CLI.

Sources, strongest first: environment variables `GLINT_<GROUP>__<FIELD>`, then the TOML file
named by `GLINT_CONFIG` (same groups as tables), then the defaults below.
"""

from __future__ import annotations

import json
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


class FileStoreSettings(_Group):
    """A directory on a local (or shared) file system."""

    type: Literal["file"] = "file"
    # Default: <data_dir>/images
    path: Path | None = None
    description: str | None = None
    # Bytes per read when streaming an object out; large reads are what make downloads fast.
    read_chunk_size: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    # fsync before an object becomes visible (off only for throwaway test stores).
    fsync: bool = True


# Further drivers (swift, s3, http) join this union, discriminated on `type`.
StoreSettings = Annotated[FileStoreSettings, Field(discriminator="type")]


class StorageSettings(_Group):
    default: str = "local"
    stores: dict[str, StoreSettings] = Field(default_factory=lambda: {"local": FileStoreSettings()})

    @model_validator(mode="after")
    def _default_exists(self) -> StorageSettings:
        if self.default not in self.stores:
            raise ValueError(f"default store {self.default!r} is not among the stores")
        return self


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


class ServerSettings(_Group):
    host: str = "127.0.0.1"
    port: int = Field(default=9292, ge=1, le=65535)
    # API processes; one per core by default (each runs the app; they share the database).
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=64)
    # Used for absolute links (versions document) when set, like Glance's public_endpoint.
    public_endpoint: str | None = None
    # Seconds a client may take to send a request line and its headers, counted from connecting
    # (or from the first byte of a later request on a kept-alive connection); a slower client is
    # disconnected, so that half-sent requests cannot hold connections forever (slowloris). 30 s
    # is far more than a real client needs for a few KiB, even on a slow link; time between
    # requests is bounded separately by uvicorn's keep-alive timeout (5 s).
    header_timeout: float = Field(default=30.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GLINT_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    data_dir: Path = Path("glint-data")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    image_formats: ImageFormatSettings = Field(default_factory=ImageFormatSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    uploads: UploadSettings = Field(default_factory=UploadSettings)

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
        field = annotation.model_fields.get(parts[0])
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

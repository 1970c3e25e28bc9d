"""The real servers the store tests run against, started by the project's own scripts.

`swift_service()` runs scripts/swift.sh (Swift with tempauth and the S3 API on 127.0.0.1:8280);
`keystone_service()` runs scripts/keystone.sh (Keystone on 127.0.0.1:5080 and a second Swift proxy,
behind Keystone, on 127.0.0.1:8281). Each script runs once per process: it installs and starts
what is missing and returns at once when all is up. A script that fails raises RuntimeError with
its output; a missing server fails the tests, it never skips them.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# From nothing the scripts take under a minute; installs on a busy shared machine take longer.
SCRIPT_TIMEOUT = 900.0


@dataclass(frozen=True)
class SwiftService:
    auth_url: str  # Swift v1 (tempauth): http://127.0.0.1:8280/auth/v1.0
    user: str
    key: str
    storage_url: str  # the account of `user`
    other_user: str  # a second account, for cross-account checks
    other_key: str
    s3_endpoint: str  # path-style addressing
    s3_access_key: str
    s3_secret_key: str
    region: str
    host: str
    port: int

    def s3_client(self, **config: Any) -> Any:
        """A boto3 client of the S3 API, set up as the S3 store needs it (path addressing,
        checksums only when required); `config` adds botocore options."""
        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.s3_access_key,
            aws_secret_access_key=self.s3_secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                **config,
            ),
        )


@dataclass(frozen=True)
class KeystoneService:
    auth_url: str  # Keystone v3: http://127.0.0.1:5080/v3
    username: str  # a member of project_name
    password: str
    project_name: str
    user_domain_name: str
    project_domain_name: str
    admin_username: str
    admin_password: str
    admin_project_name: str
    swift_proxy_url: str  # Swift behind Keystone; storage URLs are in the catalog (object-store)


def run_script(name: str) -> None:
    """Runs scripts/<name> once per process; RuntimeError with its output when it fails or hangs.

    A failure is remembered too: every test that needs the server fails at once with the same
    message instead of waiting for the script again."""
    failure = _script_failure(name)
    if failure is not None:
        raise RuntimeError(failure)


@functools.cache
def _script_failure(name: str) -> str | None:
    script = SCRIPTS / name
    try:
        result = subprocess.run(
            [str(script)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SCRIPT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        # The output captured before the timeout comes as bytes, even with text=True.
        output = b"".join(
            part.encode() if isinstance(part, str) else part
            for part in (exc.stdout, exc.stderr)
            if part
        ).decode(errors="replace")
        return f"{script} did not finish within {SCRIPT_TIMEOUT:.0f}s:\n{output}"
    except OSError as exc:
        return f"{script} could not be run: {exc}"
    if result.returncode != 0:
        return f"{script} failed (exit code {result.returncode}):\n{result.stdout}{result.stderr}"
    return None


@functools.cache
def swift_service() -> SwiftService:
    run_script("swift.sh")
    host, port = "127.0.0.1", 8280
    return SwiftService(
        auth_url=f"http://{host}:{port}/auth/v1.0",
        user="test:tester",
        key="testing",
        storage_url=f"http://{host}:{port}/v1/AUTH_test",
        other_user="test2:tester2",
        other_key="testing2",
        s3_endpoint=f"http://{host}:{port}",
        s3_access_key="test:tester",
        s3_secret_key="testing",
        region="us-east-1",
        host=host,
        port=port,
    )


@functools.cache
def keystone_service() -> KeystoneService:
    run_script("keystone.sh")
    return KeystoneService(
        auth_url="http://127.0.0.1:5080/v3",
        username="glint",
        password="glint-secret",
        project_name="glint",
        user_domain_name="Default",
        project_domain_name="Default",
        admin_username="admin",
        admin_password="admin-secret",
        admin_project_name="admin",
        swift_proxy_url="http://127.0.0.1:8281",
    )

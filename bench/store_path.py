"""Object-store benchmark: an image through Glint into Swift or S3 and back, next to the same
transfer done directly with the backend's own client library, against the same server, in the
same run.

Run on demand, never in CI (``bench/run_store_bench.sh`` starts Swift and Glint and calls this).
For one backend (``--backend swift`` or ``s3``) one run

1. writes ``--size-mib`` MiB (default 1024) of random bytes into ``--work-dir``;
2. ``--runs`` times (default 3, median reported, MB = 10^6 bytes), the targets taking turns:

   * direct: python-swiftclient ``put_object`` from the file and ``get_object`` streamed in
     4 MiB chunks; or boto3's managed ``upload_file`` (its default multipart settings) and
     ``get_object`` streamed in 4 MiB chunks;
   * Glint: ``curl -T file`` (Content-Length) to ``PUT /v2/images/{id}/file`` (the image then
     checked ``active`` with the file's MD5 and SHA-512), ``curl`` download to /dev/null, and a
     ranged download of the last MiB (``Range: bytes=-1048576``), while a thread samples the
     RSS of Glint's whole process tree every 50 ms;

3. prints the figures and the ratios against the issue's targets: Glint within 15 % of the
   direct client (ratio >= 0.85) both ways, Glint's peak RSS under 250 MB, and the ranged
   read of the last MiB under 5 % of the full download's time; ``--json`` writes them all.

Glint must run with the backend as its default store (the runner writes that configuration).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data_path import (
    MB,
    MIB,
    ApiError,
    RssResult,
    RssSampler,
    _curl_identity,
    create_image,
    curl_download,
    curl_upload,
    delete_image,
    file_digests,
    listening_pid,
    log,
    make_random_file,
    verify_image,
)
from provenance import source_commit

READ_CHUNK = 4 * MIB
RSS_TARGET_MB = 250.0
DIRECT_RATIO_TARGET = 0.85
RANGED_SHARE_TARGET = 0.05


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class Direct:
    """The backend's own client, storing into a container or bucket of its own."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.backend = args.backend
        self.name = f"bench-direct-{uuid.uuid4().hex[:8]}"
        if self.backend == "swift":
            import swiftclient

            self.swift = swiftclient.Connection(
                authurl=args.swift_auth_url, user=args.swift_user, key=args.swift_key
            )
            self.swift.put_container(self.name)
        else:
            import boto3
            from botocore.config import Config

            self.s3 = boto3.client(
                "s3",
                endpoint_url=args.s3_endpoint,
                aws_access_key_id=args.s3_access_key,
                aws_secret_access_key=args.s3_secret_key,
                region_name=args.s3_region,
                config=Config(
                    s3={"addressing_style": "path"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
            self.s3.create_bucket(Bucket=self.name)

    def upload(self, path: Path, key: str) -> None:
        if self.backend == "swift":
            with path.open("rb") as source:
                self.swift.put_object(
                    self.name, key, contents=source, content_length=path.stat().st_size
                )
        else:
            self.s3.upload_file(str(path), self.name, key)

    def download(self, key: str) -> int:
        received = 0
        if self.backend == "swift":
            _, body = self.swift.get_object(self.name, key, resp_chunk_size=READ_CHUNK)
            for chunk in body:
                received += len(chunk)
        else:
            body = self.s3.get_object(Bucket=self.name, Key=key)["Body"]
            for chunk in body.iter_chunks(READ_CHUNK):
                received += len(chunk)
        return received

    def delete(self, key: str) -> None:
        if self.backend == "swift":
            self.swift.delete_object(self.name, key)
        else:
            self.s3.delete_object(Bucket=self.name, Key=key)

    def close(self) -> None:
        if self.backend == "swift":
            self.swift.delete_container(self.name)
        else:
            self.s3.delete_bucket(Bucket=self.name)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work_dir: Path = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "store-bench.bin"
    make_random_file(path, args.size_mib * MIB)
    size = path.stat().st_size
    digests = file_digests(path)
    glint = args.glint.rstrip("/")
    pid = args.glint_pid or listening_pid(int(glint.rsplit(":", 1)[1]))
    direct = Direct(args)
    figures: dict[str, list[float]] = {
        "direct.upload": [],
        "direct.download": [],
        "glint.upload": [],
        "glint.download": [],
        "glint.ranged_seconds": [],
        "glint.download_seconds": [],
    }
    rss = RssResult()
    errors: list[str] = []
    try:
        for number in range(args.runs):
            key = f"run-{number}"
            started = time.perf_counter()
            direct.upload(path, key)
            figures["direct.upload"].append(size / (time.perf_counter() - started) / MB)
            started = time.perf_counter()
            received = direct.download(key)
            figures["direct.download"].append(size / (time.perf_counter() - started) / MB)
            if received != size:
                errors.append(f"direct download run {number + 1}: {received} bytes")
            direct.delete(key)
            log(
                f"direct {args.backend} run {number + 1}: up {figures['direct.upload'][-1]:.0f}"
                f" MB/s, down {figures['direct.download'][-1]:.0f} MB/s"
            )

            image_id = create_image(glint, f"bench-store-{number + 1}")
            sampler = RssSampler(pid, rss) if pid else None
            if sampler:
                sampler.start()
            try:
                code, seconds, sent, err = curl_upload(
                    f"{glint}/v2/images/{image_id}/file", path, False, args.timeout
                )
                if code != "204" or sent < size:
                    errors.append(f"glint upload run {number + 1}: http {code} {err}")
                    continue
                problems = verify_image(glint, image_id, size, *digests)
                errors += [f"glint upload run {number + 1}: {p}" for p in problems]
                figures["glint.upload"].append(size / seconds / MB)
                code, seconds, got, err = curl_download(
                    f"{glint}/v2/images/{image_id}/file", args.timeout
                )
                if code != "200" or got != size:
                    errors.append(f"glint download run {number + 1}: http {code}, {got} {err}")
                else:
                    figures["glint.download"].append(size / seconds / MB)
                    figures["glint.download_seconds"].append(seconds)
                ranged = ranged_last_mib(f"{glint}/v2/images/{image_id}/file", args.timeout)
                figures["glint.ranged_seconds"].append(ranged)
                log(
                    f"glint {args.backend} run {number + 1}: up {figures['glint.upload'][-1]:.0f}"
                    f" MB/s, down {figures['glint.download'][-1]:.0f} MB/s,"
                    f" last MiB in {ranged * 1000:.1f} ms, peak RSS so far"
                    f" {rss.peak_rss_mb:.0f} MB"
                )
            finally:
                if sampler:
                    sampler.stopped.set()
                    sampler.join()
                delete_image(glint, image_id)
    finally:
        direct.close()
        if not args.keep_file:
            path.unlink(missing_ok=True)
    return summarise(args, figures, rss, errors)


def ranged_last_mib(url: str, timeout: float) -> float:
    cmd = [
        "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
        "--max-time", str(int(timeout)), *_curl_identity(), "-H", f"Range: bytes=-{MIB}", url,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30).stdout.split()
    if len(out) != 2 or out[0] != "206":
        raise ApiError(f"ranged download answered {out}")
    return float(out[1])


def summarise(
    args: argparse.Namespace, figures: dict[str, list[float]], rss: RssResult, errors: list[str]
) -> dict[str, Any]:
    medians = {key: median(values) for key, values in figures.items()}

    def ratio(numerator: str, denominator: str) -> float | None:
        top, bottom = medians[numerator], medians[denominator]
        return top / bottom if top and bottom else None

    ranged_share = ratio("glint.ranged_seconds", "glint.download_seconds")
    goals = [
        ("Glint upload / direct upload", ratio("glint.upload", "direct.upload"),
         ">=", DIRECT_RATIO_TARGET),
        ("Glint download / direct download", ratio("glint.download", "direct.download"),
         ">=", DIRECT_RATIO_TARGET),
        ("last MiB ranged / full download time", ranged_share, "<", RANGED_SHARE_TARGET),
        ("Glint peak RSS, MB", rss.peak_rss_mb, "<", RSS_TARGET_MB),
    ]  # fmt: skip
    return {
        "kind": "store_path",
        "backend": args.backend,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": source_commit(),
        "size_bytes": args.size_mib * MIB,
        "runs": args.runs,
        "figures": figures,
        "medians": medians,
        "idle_rss_mb": rss.idle_rss_kib * 1024 / MB,
        "peak_rss_mb": rss.peak_rss_mb,
        "rss_samples": rss.samples,
        "goals": [
            {
                "label": label,
                "value": value,
                "comparison": comparison,
                "target": target,
                "met": None
                if value is None
                else (value >= target if comparison == ">=" else value < target),
            }
            for label, value, comparison, target in goals
        ],
        "errors": errors,
    }


def report(result: dict[str, Any]) -> None:
    medians = result["medians"]
    print(f"\n{result['backend']}: {result['size_bytes'] // MIB} MiB, {result['runs']} runs")
    for key in ("direct.upload", "glint.upload", "direct.download", "glint.download"):
        value = medians[key]
        print(f"  {key:18} {'-' if value is None else f'{value:7.0f} MB/s'}")
    for goal in result["goals"]:
        value = goal["value"]
        shown = "-" if value is None else f"{value:.3f}"
        verdict = {True: "met", False: "NOT met", None: "not measured"}[goal["met"]]
        print(f"  {goal['label']:38} {shown:>8} ({goal['comparison']} {goal['target']}) {verdict}")
    for error in result["errors"]:
        print(f"  error: {error}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=("swift", "s3"), required=True)
    p.add_argument("--glint", required=True, metavar="URL", help="Glint storing in --backend")
    p.add_argument("--glint-pid", type=int, help="Glint's root pid (default: from its port)")
    p.add_argument("--swift-auth-url", default="http://127.0.0.1:8280/auth/v1.0")
    p.add_argument("--swift-user", default="test:tester")
    p.add_argument("--swift-key", default="testing")
    p.add_argument("--s3-endpoint", default="http://127.0.0.1:8280")
    p.add_argument("--s3-access-key", default="test:tester")
    p.add_argument("--s3-secret-key", default="testing")
    p.add_argument("--s3-region", default="us-east-1")
    p.add_argument("--work-dir", type=Path, default=Path("."))
    p.add_argument("--keep-file", action="store_true")
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per transfer (600)")
    p.add_argument("--json", type=Path, help="write the results to this file")
    args = p.parse_args(argv)
    if args.runs < 1 or args.size_mib < 1:
        p.error("--runs and --size-mib must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except ApiError as error:
        log(str(error))
        return 1
    report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        log(f"results in {args.json}")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

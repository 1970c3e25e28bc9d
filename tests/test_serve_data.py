"""A real `glint serve`: uploads and downloads stream while other requests keep being answered."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.serving import serve

CHUNK = os.urandom(1024 * 1024)
CHUNKS = 48


async def slow_body() -> AsyncIterator[bytes]:
    """A client that sends 48 MiB over about a second, so the upload is still streaming while
    the other requests are made."""
    for _ in range(CHUNKS):
        yield CHUNK
        await asyncio.sleep(0.02)


async def exercise(base_url: str) -> dict[str, float]:
    finished: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:

        async def create() -> str:
            body = {"disk_format": "raw", "container_format": "bare"}
            response = await http.post("/v2/images", json=body)
            assert response.status_code == 201
            image_id: str = response.json()["id"]
            return image_id

        uploads = [await create(), await create()]
        ready = await create()
        small = os.urandom(8 * 1024 * 1024)
        put = await http.put(
            f"/v2/images/{ready}/file",
            content=small,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert put.status_code == 204

        async def upload(image_id: str) -> None:
            response = await http.put(
                f"/v2/images/{image_id}/file",
                content=slow_body(),
                headers={"Content-Type": "application/octet-stream"},
            )
            assert response.status_code == 204, response.text
            finished[f"upload {image_id}"] = loop.time()

        async def downloads() -> None:
            for _ in range(5):
                response = await http.get(f"/v2/images/{ready}/file")
                assert response.content == small
            finished["downloads"] = loop.time()

        async def metadata() -> None:
            await asyncio.sleep(0.1)  # the uploads have started
            for _ in range(20):
                assert (await http.get(f"/v2/images/{ready}")).status_code == 200
                assert (await http.get("/v2/images?limit=10")).status_code == 200
            finished["metadata"] = loop.time()

        await asyncio.gather(*(upload(i) for i in uploads), downloads(), metadata())
        for image_id in uploads:
            shown = (await http.get(f"/v2/images/{image_id}")).json()
            assert shown["status"] == "active"
            assert shown["checksum"] == hashlib.md5(CHUNK * CHUNKS).hexdigest()
    return finished


def test_requests_are_answered_while_uploads_stream(tmp_path: Path) -> None:
    with serve(tmp_path) as server:
        finished = asyncio.run(exercise(server.base_url))
    last_upload = max(t for name, t in finished.items() if name.startswith("upload"))
    assert finished["metadata"] < last_upload
    assert finished["downloads"] < last_upload


def test_a_truncated_upload_leaves_the_image_queued_and_nothing_stored(tmp_path: Path) -> None:
    import socket
    import time

    with serve(tmp_path) as server:
        create = httpx.post(
            f"{server.base_url}/v2/images",
            json={"disk_format": "raw", "container_format": "bare"},
        )
        image_id = create.json()["id"]
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            head = (
                f"PUT /v2/images/{image_id}/file HTTP/1.1\r\nHost: glint\r\n"
                "Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
            )
            connection.sendall(head.encode() + os.urandom(3_000_000))
            time.sleep(0.5)  # the server is now streaming this upload
        status = ""
        for _ in range(100):  # the server notices the disconnect and cleans up
            status = httpx.get(f"{server.base_url}/v2/images/{image_id}").json()["status"]
            if status == "queued":
                break
            time.sleep(0.1)
        assert status == "queued"
        stored = [p for p in (tmp_path / "data" / "images").rglob("*") if p.is_file()]
        assert stored == []

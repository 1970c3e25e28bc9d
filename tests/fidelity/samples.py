"""Reads the recorded real-Glance exchanges in recordings/ (see its README.md).

Each `### title` section holds the curl command that was sent and Glance's response (status line,
headers and raw body), so a test can send the same request to Glint and compare.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

SAMPLES = Path(__file__).resolve().parent / "recordings"
# Set by the HTTP client itself for whatever body is sent.
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "expect", "user-agent"})


@dataclass
class Exchange:
    title: str
    method: str
    path: str  # with query string
    headers: dict[str, str]
    body: bytes | None
    status: int
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""


def _request(command: str) -> tuple[str, str, dict[str, str], bytes | None]:
    words = shlex.split(command[2:])[1:]  # drop "$ " and "curl"
    method, headers, body, url = None, {}, None, ""
    index = 0
    while index < len(words):
        word = words[index]
        if word == "-H":
            name, _, value = words[index + 1].partition(":")
            headers[name.strip()] = value.strip()
            index += 2
        elif word in ("-d", "--data-binary"):
            body = words[index + 1].encode()
            index += 2
        elif word == "-X":
            method = words[index + 1]
            index += 2
        elif word == "-I":
            method = "HEAD"
            index += 1
        elif word.startswith("-"):
            index += 2 if word in ("-o", "-T", "-r", "-w") else 1
        else:
            url = word
            index += 1
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if method is None:
        method = "POST" if body is not None else "GET"
    return method, path, headers, body


def _parse(text: str) -> list[Exchange]:
    exchanges = []
    for section in text.split("\n### ")[1:]:
        lines = section.split("\n")
        title = lines[0].strip()
        command = next(line for line in lines if line.startswith("$ curl"))
        method, path, headers, body = _request(command)
        # The headers curl actually sent (it adds some, such as a default Content-Type).
        sent = {}
        for line in lines:
            if line.startswith("> ") and ":" in line and not line.startswith("> " + method):
                name, _, value = line[2:].partition(":")
                if name.strip().lower() not in _TRANSPORT_HEADERS:
                    sent[name.strip()] = value.strip()
        headers = {**headers, **sent}
        # The last status line: an interim "100 Continue" may come first.
        start = max(i for i, line in enumerate(lines) if line.startswith("< HTTP/"))
        status_line = lines[start]
        response_headers = {}
        for line in lines[start + 1 :]:
            if line.startswith("< ") and ":" in line:
                name, _, value = line[2:].partition(":")
                response_headers[name.strip().lower()] = value.strip()
        marker = next((i for i, line in enumerate(lines) if line.startswith("[body")), None)
        response_body = ""
        if marker is not None:
            body_lines = lines[marker + 1 :]
            end = next(
                (i for i, line in enumerate(body_lines) if line.startswith(("[body", "====="))),
                len(body_lines),
            )
            response_body = "\n".join(body_lines[:end]).rstrip("\n")
            # The recording's own web server logged into it after the last page.
            page_end = response_body.find("</html>")
            if page_end != -1:
                response_body = response_body[: page_end + len("</html>")]
        exchanges.append(
            Exchange(
                title=title,
                method=method,
                path=path,
                headers=headers,
                body=body,
                status=int(status_line.split()[2]),
                response_headers=response_headers,
                response_body=response_body,
            )
        )
    return exchanges


@cache
def exchanges(file_name: str) -> dict[str, Exchange]:
    return {e.title: e for e in _parse((SAMPLES / file_name).read_text())}


def exchange(file_name: str, title: str) -> Exchange:
    return exchanges(file_name)[title]

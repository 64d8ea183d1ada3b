"""The dataset registry as a JSON Schema (issue 19, item 5): every wrong type is one line naming the file and
the JSON path, all of them at once, exit 2; the shipped registry validates; partial downloads of datasets
whose files share a name stay apart, and two processes fetching one file wait for each other."""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from helpers import send_range_headers
from longify.cli import main
from longify.data import download, load_registry

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "src" / "longify" / "data" / "registry.json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def good_entry() -> dict[str, Any]:
    """A valid registry entry: one JSON file and one optional archive."""
    return {
        "description": "a test dataset",
        "license": "CC0",
        "aliases": ["dee"],
        "files": [
            {
                "name": "d.json",
                "urls": ["https://example.org/d.json", "http://mirror.example.org/d.json"],
                "bytes": 10,
                "sha256": "a" * 64,
                "kind": "json",
            },
            {
                "name": "extra.tar.gz",
                "urls": ["https://example.org/extra.tar.gz"],
                "bytes": 20,
                "sha256": "b" * 64,
                "kind": "tar.gz",
                "members": ["extra/one.json"],
                "optional": True,
            },
        ],
    }


def write(path: Path, datasets: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"datasets": datasets}), encoding="utf-8")
    return path


def run_list(reg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["data", "list", "--registry", str(reg), "--dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.removeprefix("longify: error: ").splitlines()


def _set(entry: dict[str, Any], path: str, value: Any) -> None:
    """Set ``files[0].members``-style paths in ``entry``; the value ``...`` deletes the field."""
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = entry
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value


BAD = [  # (field set, wrong value or ... to delete it, the JSON path named, the message)
    ("files[0].members", 5, "files[0].members", "5 is not of type 'array'"),
    ("files[0].members", [1], "files[0].members[0]", "1 is not of type 'string'"),
    ("aliases", "sq", "aliases", "'sq' is not of type 'array'"),
    ("files[1].optional", "no", "files[1].optional", "'no' is not of type 'boolean'"),
    ("files[0].bytes", 0, "files[0].bytes", "0 is less than the minimum of 1"),
    ("files[0].bytes", "10", "files[0].bytes", "'10' is not of type 'integer'"),
    ("files[0].sha256", "abc", "files[0].sha256", "'abc' does not match"),
    ("files[0].urls", "https://x.org/d", "files[0].urls", "'https://x.org/d' is not of type 'array'"),
    ("files[0].urls", ["ftp://x.org/d"], "files[0].urls[0]", "'ftp://x.org/d' does not match"),
    ("files[0].urls", [], "files[0].urls", "[] should be non-empty"),
    ("files[0].kind", "rar", "files[0].kind", "'rar' is not one of"),
    ("license", ..., "", "'license' is a required property"),
    ("files[0].sha256", ..., "files[0]", "'sha256' is a required property"),
]


@pytest.mark.parametrize(("field", "value", "where", "message"), BAD, ids=[f"{f}={v!r}" for f, v, *_ in BAD])
def test_schema_names_the_file_and_json_path(
    field: str, value: Any, where: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = good_entry()
    _set(entry, field, value)
    reg = write(tmp_path / "r.json", {"d": entry})
    code, lines = run_list(reg, tmp_path, capsys)
    assert code == 2 and len(lines) == 1, lines
    path = f"datasets.d.{where}" if where else "datasets.d"
    assert lines[0].startswith(f"{reg}: {path}: {message}"), lines[0]


def test_every_schema_error_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = good_entry()
    entry["aliases"] = "sq"
    entry["files"][0]["members"] = 5
    entry["files"][1]["optional"] = "no"
    other = good_entry()
    other["aliases"] = []
    del other["files"][0]["kind"]
    reg = write(tmp_path / "r.json", {"d": entry, "e": other})
    code, lines = run_list(reg, tmp_path, capsys)
    assert code == 2
    assert sorted(lines) == sorted(
        [
            f"{reg}: datasets.d.aliases: 'sq' is not of type 'array'",
            f"{reg}: datasets.d.files[0].members: 5 is not of type 'array'",
            f"{reg}: datasets.d.files[1].optional: 'no' is not of type 'boolean'",
            f"{reg}: datasets.e.files[0]: 'kind' is a required property",
        ]
    )


def test_optional_no_is_refused_before_any_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``"optional": "no"`` was truthy: the file was silently left out. Now the download stops first."""
    entry = good_entry()
    entry["files"][1]["optional"] = "no"
    reg = write(tmp_path / "r.json", {"d": entry})
    code = main(["data", "download", "d", "--registry", str(reg), "--dir", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{reg}: datasets.d.files[1].optional: 'no' is not of type 'boolean'" in err
    assert not (tmp_path / "data").exists()


def test_unknown_field_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt field (``optinal``) would be ignored and its file downloaded: refused instead."""
    entry = good_entry()
    entry["files"][1]["optinal"] = entry["files"][1].pop("optional")
    code, lines = run_list(write(tmp_path / "r.json", {"d": entry}), tmp_path, capsys)
    assert code == 2 and "datasets.d.files[1]" in lines[0] and "'optinal' was unexpected" in lines[0]


def test_aliases_shared_by_two_entries_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a schema cannot say: one name for two datasets (an alias of one is another's name or alias)."""
    one, two = good_entry(), good_entry()
    reg = write(tmp_path / "r.json", {"d": one, "e": two})  # both say "dee"
    code, lines = run_list(reg, tmp_path, capsys)
    assert code == 2 and lines == [f"{reg}: datasets.e.aliases: 'dee' is already a name of dataset 'd'"]
    shadow = write(tmp_path / "s.json", {"squad": good_entry() | {"aliases": []}})  # the built-in alias
    code, lines = run_list(shadow, tmp_path, capsys)
    assert code == 2 and lines[0].startswith(
        f"{shadow}: datasets.squad: 'squad' is already a name of dataset"
    )


def test_a_dataset_given_twice_in_one_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON keeps the last of two equal keys: the first entry would vanish without a word."""
    entry = json.dumps(good_entry())
    reg = tmp_path / "r.json"
    reg.write_text(f'{{"datasets": {{"d": {entry}, "d": {entry}}}}}', encoding="utf-8")
    code, lines = run_list(reg, tmp_path, capsys)
    assert code == 2 and lines == [
        f"--registry {reg}: not a readable JSON file (the key 'd' appears twice in one object)"
    ]


def test_good_registry_loads_with_its_types(tmp_path: Path) -> None:
    reg = load_registry(write(tmp_path / "r.json", {"d": good_entry()}))
    ds = reg.get("dee")
    assert ds.aliases == ("dee",)
    assert [(f.optional, f.members) for f in ds.files] == [(False, ()), (True, ("extra/one.json",))]


def _walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every field schema (a value of ``properties``) in ``node``, with where it is."""
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            yield f"{path}.{key}", value
        for key, value in node.items():
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_shipped_registry_validates_against_the_shipped_schema() -> None:
    text = resources.files("longify.data").joinpath("registry.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.loads(SHIPPED.read_text())))
    assert errors == []
    fields = list(_walk(schema, "#"))
    assert len(fields) > 15 and [p for p, f in fields if not f.get("description")] == []
    assert "data/registry.schema.json" in (REPO / "pyproject.toml").read_text()


class SlowServer:
    """A loopback server (127.0.0.1, port 0) with Range support. ``cut``: the first request for a file gets half
    of it and a closed connection; requests that resume (with ``Range``) wait at a barrier until ``parties`` of
    them have arrived, so that every client has written its partial file before any gets the rest. Otherwise
    a request waits for ``release`` before sending anything."""

    def __init__(self, files: dict[str, bytes], *, cut: bool, parties: int = 2) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.barrier = threading.Barrier(parties, timeout=20)
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name, rng = self.path.lstrip("/"), self.headers.get("Range")
                server.requests.append((name, rng))
                body = server.files[name]
                if not cut:
                    server.release.wait(30)
                elif rng:
                    with contextlib.suppress(threading.BrokenBarrierError):
                        server.barrier.wait()
                start = send_range_headers(self, body, rng)
                if cut and not rng:
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def names(self) -> list[str]:
        return [n for n, _ in self.requests]

    def close(self) -> None:
        self.release.set()
        self.barrier.abort()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_datasets_with_a_file_of_the_same_name_download_at_once(tmp_path: Path) -> None:
    """Two datasets, each with its own ``data.json``, downloaded into one data dir at the same moment: each
    first transfer is cut half-way, and the server answers the resuming requests only once both have come, so
    both partial files exist at once and each download resumes its own."""
    bodies = {"a/data.json": b"A" * 150_000 + b'"a"', "b/data.json": b"B" * 170_000 + b'"b"'}
    server = SlowServer(bodies, cut=True)
    datasets = {
        n: {
            "license": "CC0",
            "files": [
                {
                    "name": "data.json",
                    "urls": [f"{server.url}/{n}/data.json"],
                    "bytes": len(bodies[f"{n}/data.json"]),
                    "sha256": sha(bodies[f"{n}/data.json"]),
                    "kind": "json",
                }
            ],
        }
        for n in ("a", "b")
    }
    reg = load_registry(write(tmp_path / "r.json", datasets))
    root = tmp_path / "data"
    errors: dict[str, BaseException] = {}

    def fetch(name: str) -> None:
        try:
            download([name], root, registry=reg, retries=1, progress=False)
        except BaseException as err:
            errors[name] = err

    threads = [threading.Thread(target=fetch, args=(n,)) for n in ("a", "b")]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        server.close()
    assert errors == {}
    assert sorted(server.names()) == ["a/data.json"] * 2 + ["b/data.json"] * 2  # each resumed once
    for n in ("a", "b"):
        assert (root / n / "data.json").read_bytes() == bodies[f"{n}/data.json"]
    assert [p for p in (root / ".downloads").rglob("*") if p.is_file()] == []  # nothing left behind


FETCH = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from longify.data.fetch import fetch_file
url, dest, digest, size = sys.argv[1:]
stats = fetch_file([url], dest, sha256=digest, size=int(size), retries=0, progress=False)
print(stats.requests, stats.received)
"""


@pytest.mark.integration
def test_two_processes_fetching_one_file_wait_for_each_other(tmp_path: Path) -> None:
    """The second process waits for the first one's lock on the file, then finds it complete: one request,
    never two writers of one partial file."""
    body = bytes(range(256)) * 600
    server = SlowServer({"f.bin": body}, cut=False)
    dest = tmp_path / "dl" / "f.bin"
    args = [sys.executable, "-c", FETCH, f"{server.url}/f.bin", str(dest), sha(body), str(len(body))]
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with logs[0].open("wb") as err0, logs[1].open("wb") as err1:
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err0))
            deadline = time.monotonic() + 60
            while not server.requests and time.monotonic() < deadline:  # the first holds the lock
                time.sleep(0.05)
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err1))
            while time.monotonic() < deadline:  # until it waits (fixed) or sends its own request (old)
                if "waiting for" in logs[1].read_text() or len(server.requests) > 1:
                    break
                time.sleep(0.05)
            server.release.set()
            outs = [p.communicate(timeout=60)[0].decode().split() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.close()
    assert [p.returncode for p in procs] == [0, 0], [log.read_text() for log in logs]
    assert "waiting for" in logs[1].read_text()
    assert server.names() == ["f.bin"]
    assert outs == [["1", str(len(body))], ["0", "0"]]
    assert dest.read_bytes() == body

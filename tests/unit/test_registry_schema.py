"""The dataset registry as a JSON Schema: every wrong type is one line naming the file and the JSON path, all
of them at once, exit 2; the shipped registry validates; partial downloads of datasets whose files share a
name stay apart."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from helpers import REPO, SlowServer
from longify.catalog.registry import load_registry
from longify.cli import main
from longify.data import download

SHIPPED = REPO / "src" / "longify" / "catalog" / "registry.json"


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
    """``"optional": "no"`` (a string, not a boolean) stops ``data download`` in one line before any download."""
    entry = good_entry()
    entry["files"][1]["optional"] = "no"
    reg = write(tmp_path / "r.json", {"d": entry})
    code = main(["data", "download", "d", "--registry", str(reg), "--dir", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{reg}: datasets.d.files[1].optional: 'no' is not of type 'boolean'" in err
    assert not (tmp_path / "data").exists()


def test_unknown_field_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A misspelt field (``optinal``) is refused, naming it, rather than ignored."""
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
    text = resources.files("longify.catalog").joinpath("registry.schema.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(json.loads(SHIPPED.read_text())))
    assert errors == []
    fields = list(_walk(schema, "#"))
    assert len(fields) > 15 and [p for p, f in fields if not f.get("description")] == []
    assert "catalog/registry.schema.json" in (REPO / "pyproject.toml").read_text()


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

"""longify data: registry, verified resumable downloads from a loopback server, safe unpacking, names."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import SHARED_XQUAD, send_range_headers
from longify.catalog.names import MANIFEST, dataset_path
from longify.catalog.registry import load_registry
from longify.cli import main
from longify.data import download
from longify.data.fetch import fetch_file, part_path
from longify.errors import LongifyError


class Server:
    """A loopback HTTP server (127.0.0.1, port 0) serving ``files`` with Range support; ``drop`` names a file
    whose first response is cut after half its bytes; every request and byte sent is recorded. Bytes are
    counted before they are written: a client that has read them may check ``sent`` while this thread is still
    returning from ``write``."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = send_range_headers(self, body, rng)
                chunk = body[start:]
                if name in server.drop:
                    server.drop.discard(name)
                    chunk = chunk[: len(chunk) // 2]
                    server.sent += len(chunk)
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                server.sent += len(chunk)
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def names(self) -> list[str]:
        return [n for n, _ in self.requests]


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(name: str, data: bytes, urls: list[str], kind: str = "json", **extra: object) -> dict:
    return {"name": name, "urls": urls, "bytes": len(data), "sha256": sha(data), "kind": kind, **extra}


def write_registry(path: Path, datasets: dict) -> Path:
    path.write_text(json.dumps({"datasets": datasets}), encoding="utf-8")
    return path


def tar_bytes(members: list[tarfile.TarInfo], payload: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info in members:
            if info.isfile():
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


XQUAD_DOC = {
    "version": "1.1",
    "data": [
        {
            "title": "T",
            "paragraphs": [
                {
                    "context": "Alpha beta gamma delta.",
                    "qas": [
                        {"id": "q1", "question": "What?", "answers": [{"text": "gamma", "answer_start": 11}]}
                    ],
                }
            ],
        }
    ],
}


def test_builtin_registry_is_complete() -> None:
    reg = load_registry()
    for name in ("wikitext-103", "squad", "xquad", "mlqa", "tydiqa", "triviaqa"):
        ds = reg.get(name)
        assert ds.license and ds.required()
        assert all(f.checksum_source and len(f.sha256) == 64 and f.bytes > 0 for f in ds.files)
    # a fact read by hand from ../shared/datasets/registry.json (HF + TFDS checksum records)
    dev = {f.name: f for f in reg.get("squad").files}["dev-v1.1.json"]
    assert (dev.bytes, dev.sha256[:12]) == (4854279, "95aa6a52d5d6")


def test_bad_registry_is_one_line(tmp_path: Path) -> None:
    bad = write_registry(tmp_path / "r.json", {"x": {"license": "l", "files": [{"name": "a", "urls": []}]}})
    with pytest.raises(LongifyError, match=r"datasets\.x\.files\[0\]\.urls"):
        load_registry(bad)


def test_list_and_dry_run_offline(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["data", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "xquad" in out and "absent" in out and "CC BY-SA 4.0" in out
    assert main(["data", "download", "--dry-run", "squad", "xquad", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json" in out
    assert "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9" in out
    assert "4854279 bytes" in out and "xquad.zh.json" in out
    assert not any(tmp_path.iterdir())


def test_download_success_then_noop(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.dumps(XQUAD_DOC).encode()
    server.files["xquad.en.json"] = data
    reg = write_registry(
        tmp_path / "r.json",
        {
            "xquad": {
                "license": "CC BY-SA 4.0",
                "files": [entry("xquad.en.json", data, [f"{server.url}/xquad.en.json"])],
            }
        },
    )
    out = tmp_path / "data"
    assert main(["data", "download", "xquad", "--dir", str(out), "--registry", str(reg)]) == 0
    printed = capsys.readouterr().out
    assert "license: CC BY-SA 4.0" in printed
    assert (out / "xquad" / "xquad.en.json").read_bytes() == data
    assert json.loads((out / "xquad" / MANIFEST).read_text())["files"]["xquad.en.json"]["sha256"] == sha(data)
    assert server.names() == ["xquad.en.json"]
    assert main(["data", "download", "xquad", "--dir", str(out), "--registry", str(reg)]) == 0
    assert "present" in capsys.readouterr().out
    assert len(server.requests) == 1  # already present: no request
    assert main(["data", "download", "xquad", "--verify", "--dir", str(out), "--registry", str(reg)]) == 0
    assert "verified" in capsys.readouterr().out and len(server.requests) == 1
    assert main(["data", "list", "--dir", str(out), "--registry", str(reg)]) == 0
    assert "xquad: " in (line := capsys.readouterr().out) and "present" in line


def test_verify_notices_a_changed_file(server: Server, tmp_path: Path) -> None:
    data = b'{"a": 1}'
    server.files["f.json"] = data
    reg = load_registry(
        write_registry(
            tmp_path / "r.json",
            {"d": {"license": "l", "files": [entry("f.json", data, [f"{server.url}/f.json"])]}},
        )
    )
    download(["d"], tmp_path / "data", registry=reg, progress=False)
    target = tmp_path / "data" / "d" / "f.json"
    stat = target.stat()
    target.write_bytes(b'{"a": 2}')
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and mtime: only a re-hash sees it
    assert download(["d"], tmp_path / "data", registry=reg, progress=False)[0].action == "present"
    assert (
        download(["d"], tmp_path / "data", registry=reg, verify=True, progress=False)[0].action
        == "downloaded"
    )
    assert target.read_bytes() == data and len(server.requests) == 2


def test_sha_mismatch_refused(server: Server, tmp_path: Path) -> None:
    server.files["f.json"] = b"tampered"
    good = b"original"
    dest = tmp_path / "f.json"
    with pytest.raises(LongifyError) as err:
        fetch_file([f"{server.url}/f.json"], dest, sha256=sha(good), size=len(b"tampered"), progress=False)
    line = str(err.value)
    assert "\n" not in line and f"{server.url}/f.json" in line
    assert sha(good) in line and sha(b"tampered") in line
    assert not dest.exists() and not part_path(dest, sha(good)).exists()


def test_a_failed_download_is_said_once(server: Server, tmp_path: Path, caplog) -> None:
    """The last URL's failure is said once, as the error (no warning with the same text before it); a URL
    that fails before another works is one warning."""
    data = b"x" * 100
    server.files["ok.bin"] = data
    caplog.set_level(logging.WARNING)
    with pytest.raises(LongifyError, match="404") as err:
        fetch_file([f"{server.url}/gone.bin"], tmp_path / "a.bin", sha256=sha(data), size=100, retries=0)
    assert "gone.bin" in str(err.value) and caplog.records == []
    stats = fetch_file([f"{server.url}/gone.bin", f"{server.url}/ok.bin"], tmp_path / "b.bin",
                       sha256=sha(data), size=100, retries=0, progress=False)  # fmt: skip
    assert stats.url.endswith("ok.bin")
    assert [r.getMessage() for r in caplog.records] == [f"{stats.failures[0]}; trying the next URL"]


def test_cut_transfer_resumes_next_call(server: Server, tmp_path: Path) -> None:
    data = bytes(range(256)) * 400
    server.files["big.bin"] = data
    server.drop.add("big.bin")
    dest = tmp_path / "big.bin"
    url = [f"{server.url}/big.bin"]
    with pytest.raises(LongifyError, match="transfer"):
        fetch_file(url, dest, sha256=sha(data), size=len(data), retries=0, progress=False)
    half = part_path(dest, sha(data)).stat().st_size
    assert half == len(data) // 2 and not dest.exists()
    stats = fetch_file(url, dest, sha256=sha(data), size=len(data), retries=0, progress=False)
    assert dest.read_bytes() == data
    assert server.requests[-1] == ("big.bin", f"bytes={half}-")
    assert (stats.resumed_from, stats.received) == (half, len(data) - half)
    assert server.sent == len(data)  # no byte sent twice


def test_cut_transfer_retried_within_one_call(server: Server, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    server.files["b.bin"] = data
    server.drop.add("b.bin")
    stats = fetch_file(
        [f"{server.url}/b.bin"],
        tmp_path / "b.bin",
        sha256=sha(data),
        size=len(data),
        backoff=0.01,
        progress=False,
    )
    assert stats.requests == 2 and stats.resumed_from == len(data) // 2 and server.sent == len(data)


def test_404_then_alternate_and_mirror_first(server: Server, tmp_path: Path) -> None:
    data = b"payload"
    server.files["alt/f.json"] = data
    urls = [f"{server.url}/missing/f.json", f"{server.url}/alt/f.json"]
    stats = fetch_file(urls, tmp_path / "f.json", sha256=sha(data), size=len(data), progress=False)
    assert stats.url == urls[1] and server.names() == ["missing/f.json", "alt/f.json"]
    assert (tmp_path / "f.json").read_bytes() == data
    # --mirror BASE_URL is tried before the registry's URLs
    server.files["mirror/g.json"] = data
    reg = write_registry(
        tmp_path / "r.json",
        {"g": {"license": "l", "files": [entry("g.json", data, [f"{server.url}/missing/g.json"])]}},
    )
    assert (
        main(
            [
                "data",
                "download",
                "g",
                "--dir",
                str(tmp_path / "d"),
                "--registry",
                str(reg),
                "--mirror",
                f"{server.url}/mirror",
            ]
        )
        == 0
    )
    assert server.names()[-1] == "mirror/g.json" and (tmp_path / "d" / "g" / "g.json").read_bytes() == data


@pytest.mark.parametrize(
    "member",
    [
        tar_member("../evil"),
        tar_member("/tmp/longify-abs-evil"),
        tar_member("link", tarfile.SYMTYPE, "/etc"),
        tar_member("up", tarfile.SYMTYPE, "../../outside"),
        tar_member("hard", tarfile.LNKTYPE, "../x"),
        tar_member("dev", tarfile.CHRTYPE),
    ],
    ids=["dotdot", "absolute", "symlink-etc", "symlink-up", "hardlink-up", "device"],
)
def test_evil_tar_refused(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str], member: tarfile.TarInfo
) -> None:
    archive = tar_bytes([tar_member("ok/a.txt"), member])
    server.files["a.tar.gz"] = archive
    reg = write_registry(
        tmp_path / "r.json",
        {"t": {"license": "l", "files": [entry("a.tar.gz", archive, [f"{server.url}/a.tar.gz"], "tar.gz")]}},
    )
    root = tmp_path / "box" / "data"
    root.mkdir(parents=True)
    assert main(["data", "download", "t", "--dir", str(root), "--registry", str(reg)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err and repr(member.name) in err
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["data"]  # nothing beside DIR
    assert not Path("/tmp/longify-abs-evil").exists()
    assert not (root / "t").exists()  # no half folder
    assert [p.name for p in root.iterdir() if not p.name.startswith(".downloads")] == []


def test_evil_zip_refused(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "bad")
    archive = buf.getvalue()
    server.files["a.zip"] = archive
    reg = write_registry(
        tmp_path / "r.json",
        {"z": {"license": "l", "files": [entry("a.zip", archive, [f"{server.url}/a.zip"], "zip")]}},
    )
    root = tmp_path / "box" / "data"
    assert main(["data", "download", "z", "--dir", str(root), "--registry", str(reg)]) == 2
    assert "'../evil.txt'" in capsys.readouterr().err
    assert not (tmp_path / "box" / "evil.txt").exists() and not (root / "z").exists()


def test_good_archives_unpack(server: Server, tmp_path: Path) -> None:
    tgz = tar_bytes([tar_member("pack/a.txt"), tar_member("pack/inner", tarfile.SYMTYPE, "a.txt")])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("Z/b.txt", "bee")
    server.files.update({"a.tgz": tgz, "b.zip": buf.getvalue()})
    reg = load_registry(
        write_registry(
            tmp_path / "r.json",
            {
                "both": {
                    "license": "l",
                    "root": "pack",
                    "files": [
                        entry("a.tgz", tgz, [f"{server.url}/a.tgz"], "tar.gz"),
                        entry("b.zip", buf.getvalue(), [f"{server.url}/b.zip"], "zip"),
                    ],
                }
            },
        )
    )
    download(["both"], tmp_path / "d", registry=reg, progress=False)
    assert (tmp_path / "d" / "both" / "pack" / "a.txt").read_bytes() == b"x"
    assert (tmp_path / "d" / "both" / "pack" / "inner").is_symlink()
    assert (tmp_path / "d" / "both" / "Z" / "b.txt").read_text() == "bee"
    assert not list((tmp_path / "d" / ".downloads").iterdir())  # archives removed once unpacked
    assert dataset_path("both", tmp_path / "d", reg) == tmp_path / "d" / "both" / "pack"


def test_missing_dataset_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(LongifyError) as err:
        dataset_path("xquad", tmp_path)
    assert str(err.value).endswith(f"run: longify data download xquad --dir {tmp_path}")
    assert dataset_path("no-such-name", tmp_path) is None


def test_qa_evaluate_finds_downloaded_xquad(
    server: Server,
    tiny_sources: dict[str, Path],
    xquad_fixture_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from longify.convert import convert

    files = {p.name: p.read_bytes() for p in sorted(xquad_fixture_dir.glob("xquad.*.json"))}
    server.files.update(files)
    reg = write_registry(
        tmp_path / "r.json",
        {
            "xquad": {
                "license": "CC BY-SA 4.0",
                "files": [entry(n, b, [f"{server.url}/{n}"]) for n, b in files.items()],
            }
        },
    )
    monkeypatch.setenv("LONGIFY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LONGIFY_REGISTRY", str(reg))
    long_model = tmp_path / "long"
    convert(str(tiny_sources["roberta"]), long_model, max_pos=128, attention_window=32, verify=False)
    evaluate = ["qa", "evaluate", "--model_name_or_path", str(long_model), "--dataset", "xquad",
                "--languages", "en", "--output_dir", str(tmp_path / "eval"), "--max_seq_length", "128", "--doc_stride", "32"]  # fmt: skip
    assert main(evaluate) == 2  # not downloaded yet: one line with the exact command
    err = capsys.readouterr().err.strip().splitlines()[-1:]  # (after the model's loading bar)
    assert err == [
        f"longify: error: dataset xquad is not downloaded in {tmp_path / 'data'}; "
        f"run: longify data download xquad --dir {tmp_path / 'data'}"
    ]
    assert main(["data", "download", "xquad"]) == 0
    assert main(evaluate) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    en = json.loads(files["xquad.en.json"])
    questions = sum(len(p["qas"]) for a in en["data"] for p in a["paragraphs"])
    assert list(results["per_language"]) == ["en"] and results["per_language"]["en"]["total"] == questions


@pytest.mark.skipif(not (SHARED_XQUAD / "xquad.de.json").is_file(), reason="../shared/data/xquad absent")
def test_stats_on_shared_xquad_two_tokenizers(tiny_sources: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np
    from transformers import AutoTokenizer

    out = tmp_path / "stats"
    argv = ["data", "stats", "xquad", "--path", str(SHARED_XQUAD), "--languages", "en,de", "--out", str(out),
            "--tokenizer", str(tiny_sources["roberta"]), "--tokenizer", str(tiny_sources["xlm-roberta"])]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((out / "stats.json").read_text())
    assert {(r["language"], r["tokenizer"]) for r in rows} == {
        (lang, t) for lang in ("en", "de") for t in ("roberta", "xlm-roberta")
    }
    assert (out / "stats.csv").read_text().count("\n") == 5 and (out / "stats.md").is_file()
    assert all((out / p).stat().st_size > 1000 for p in ("context_tokens.png", "fertility.png"))
    # independent recount for German with the raw tokenizers library: contexts from the raw JSON
    doc = json.loads((SHARED_XQUAD / "xquad.de.json").read_text(encoding="utf-8"))
    paragraphs = [p for a in doc["data"] for p in a["paragraphs"]]
    for name in ("roberta", "xlm-roberta"):
        backend = AutoTokenizer.from_pretrained(tiny_sources[name]).backend_tokenizer
        seen: dict[str, object] = {}
        for p in paragraphs:
            seen.setdefault(p["context"], backend.encode(p["context"], add_special_tokens=False))
        lengths = np.array([len(e.ids) for e in seen.values()])
        words = sum(len(c.split()) for c in seen)
        after = []
        for p in paragraphs:
            offs = seen[p["context"]].offsets
            for q in p["qas"]:
                start = q["answers"][0]["answer_start"]
                after.append(next(i for i, (_, end) in enumerate(offs) if end > start) >= 512)
        row = next(r for r in rows if r["language"] == "de" and r["tokenizer"] == name)
        assert row["questions"] == sum(len(p["qas"]) for p in paragraphs)
        assert row["contexts"] == len(seen)
        assert row["tokens_max"] == lengths.max() and row["tokens_p90"] == pytest.approx(
            np.percentile(lengths, 90)
        )
        assert row["tokens_mean"] == pytest.approx(lengths.mean())
        assert row["fertility"] == pytest.approx(lengths.sum() / words)
        assert row["share_over_512"] == pytest.approx((lengths > 512).mean())
        assert row["answers_after_512"] == pytest.approx(np.mean(after))


def test_stats_tell_tokenizer_folders_of_the_same_name_apart(tiny_sources: dict[str, Path], tmp_path: Path,
                                                           capsys) -> None:  # fmt: skip
    """Two tokenizers in folders both named `model` are two labels (``a/model``, ``b/model``), each with its own
    counts; one folder given twice is one line."""
    import shutil

    from helpers import write_squad

    dev = write_squad(tmp_path / "dev.json", 3, seed=1)
    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    shutil.copytree(tiny_sources["roberta"], a)
    shutil.copytree(tiny_sources["xlm-roberta"], b)
    out = tmp_path / "stats"
    argv = ["data", "stats", "squad", "--path", str(dev), "--out", str(out), "--tokenizer", str(a)]
    assert main([*argv, "--tokenizer", str(b)]) == 0
    rows = json.loads((out / "stats.json").read_text())
    assert [r["tokenizer"] for r in rows] == ["a/model", "b/model"]
    assert rows[0]["fertility"] != rows[1]["fertility"]  # each row is its own tokenizer's count
    capsys.readouterr()
    argv[argv.index(str(out))] = str(tmp_path / "again")
    assert main([*argv, "--tokenizer", f"{a}/"]) == 2
    assert capsys.readouterr().err.strip() == f"longify: error: --tokenizer {a}: given twice"
    assert not (tmp_path / "again").exists()


def test_tokenizer_labels_go_up_only_as_far_as_needed(tmp_path: Path) -> None:
    from longify.data.stats import tokenizer_labels

    for folder in ("x/a/model", "y/a/model", "z/tok"):
        (tmp_path / folder).mkdir(parents=True)
    names = [str(tmp_path / f) for f in ("x/a/model", "y/a/model", "z/tok")] + ["roberta-base"]
    assert tokenizer_labels(names) == ["x/a/model", "y/a/model", "tok", "roberta-base"]


def test_pretrain_corpus_names_resolve_to_their_split_files(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zipfile

    from longify.catalog.names import resolve_text_files
    from longify.data.store import download

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for split in ("train", "valid", "test"):
            zf.writestr(f"wikitext-103-raw/wiki.{split}.raw", f" = {split} = \n")
    data = buf.getvalue()
    server.files["wikitext-103-raw-v1.zip"] = data
    reg = write_registry(
        tmp_path / "r.json",
        {
            "wikitext-103-raw-v1": {
                "license": "CC BY-SA 3.0",
                "aliases": ["wikitext-103"],
                "root": "wikitext-103-raw",
                "files": [
                    entry(
                        "wikitext-103-raw-v1.zip", data, [f"{server.url}/wikitext-103-raw-v1.zip"], kind="zip"
                    )
                ],
            }
        },
    )
    monkeypatch.setenv("LONGIFY_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("LONGIFY_REGISTRY", str(reg))
    with pytest.raises(LongifyError, match="run: longify data download wikitext-103-raw-v1"):
        resolve_text_files("wikitext-103", "train")
    download(["wikitext-103"], tmp_path / "data", progress=False)
    root = tmp_path / "data" / "wikitext-103-raw-v1" / "wikitext-103-raw"
    assert resolve_text_files("wikitext-103", "train") == str(root / "wiki.train.raw")
    assert resolve_text_files("wikitext-103", "validation") == str(root / "wiki.valid.raw")
    here = tmp_path / "mine.txt"
    here.write_text("x")
    assert resolve_text_files(f"{here},wikitext-103", "train") == f"{here},{root / 'wiki.train.raw'}"

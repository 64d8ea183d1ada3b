"""QA benchmark loaders on their fixtures, their errors on malformed files, and --concat-contexts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO
from longify.errors import LongifyError
from longify.qa.tasks import (
    TASKS,
    Answer,
    QAExample,
    examples_to_dataset,
    get_task,
    load_examples,
    write_jsonl,
)
from longify.qa.tasks.concat import concat_contexts
from longify.qa.tasks.example import check_example
from longify.qa.tasks.triviaqa import find_answers, truncate_words

FIXTURES = REPO / "tests" / "fixtures" / "qa"
SQUAD = FIXTURES / "squad" / "dev-v1.1.json"


def test_registry_lists_every_benchmark():
    assert set(TASKS) == {
        "squad",
        "xquad",
        "mlqa",
        "mlqa-gxlt",
        "tydiqa",
        "triviaqa",
        "triviaqa-wikipedia",
        "triviaqa-web",
        "json",
    }
    assert get_task("mlqa").metric == "mlqa" and get_task("triviaqa").metric == "triviaqa"
    assert len(get_task("xquad").languages) == 12
    with pytest.raises(LongifyError, match=r"--dataset nq: expected one of \['json', 'mlqa'"):
        get_task("nq")


def test_squad_fixture():
    examples = list(load_examples("squad", FIXTURES / "squad"))  # folder + split -> dev-v1.1.json
    assert [e.id for e in examples] == ["sq-001", "sq-002", "sq-003", "sq-004", "sq-005"]
    first = examples[0]
    assert (first.title, first.language, first.question) == (
        "Normans",
        "en",
        "In what country is Normandy located?",
    )
    assert first.answers == [Answer("France", 104)] and first.context[104:110] == "France"
    assert [a.text for a in examples[1].answers] == [
        "10th and 11th centuries",
        "in the 10th and 11th centuries",
    ]
    assert examples[4].title == "Amazon_rainforest"
    assert list(load_examples("squad", SQUAD)) == examples


def _broken_squad(tmp_path: Path, change) -> Path:
    data = json.loads(SQUAD.read_text())
    change(data["data"][0]["paragraphs"][1])
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    return path


BROKEN = {
    "missing question": (
        lambda p: p["qas"][0].pop("question"),
        r"broken.json: question sq-003: missing field 'question'$",
    ),
    "answer_start off": (
        lambda p: p["qas"][1]["answers"][0].update(answer_start=3),
        r"broken.json: question sq-004: answer '911' is not at answer_start 3 of the context \(found 'lo '\)$",
    ),
    "answer_start outside": (
        lambda p: p["qas"][1]["answers"][0].update(answer_start=999),
        r"broken.json: question sq-004: answer '911' is not at answer_start 999 of the context \(outside",
    ),
    "empty context": (lambda p: p.update(context="  "), r"broken.json: question sq-003: empty context$"),
    "no context": (
        lambda p: p.pop("context"),
        r"broken.json: question sq-003: paragraph has no string field",
    ),
    "no answers": (lambda p: p["qas"][0].update(answers=[]), r"question sq-003: no answers"),
    "start not int": (
        lambda p: p["qas"][0]["answers"][0].update(answer_start=None),
        r"question sq-003: field 'answer_start' should be int, got NoneType$",
    ),
    "missing id": (
        lambda p: p["qas"][0].pop("id"),
        r"broken.json: question in article 'Normans': missing field 'id'",
    ),
    "duplicate id": (
        lambda p: p["qas"][1].update(id="sq-003"),
        r"broken.json: question sq-003: duplicate question id",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_malformed_squad_files_give_one_line_naming_file_and_question(tmp_path, case):
    change, message = BROKEN[case]
    path = _broken_squad(tmp_path, change)
    with pytest.raises(LongifyError, match=message) as error:
        list(load_examples("squad", path))
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    assert error.value.exit_code == 2


def test_wrong_json_and_missing_files(tmp_path):
    bad = tmp_path / "dev-v1.1.json"
    bad.write_text('{"data": [')
    with pytest.raises(
        LongifyError, match=r"dev-v1.1.json: not valid JSON \(Expecting value at line 1 column 11\)"
    ):
        list(load_examples("squad", bad))
    bad.write_text("[]")
    with pytest.raises(LongifyError, match=r"dev-v1.1.json: top level: missing field 'data'"):
        list(load_examples("squad", bad))
    with pytest.raises(LongifyError, match=r"nowhere: file or directory not found"):
        list(load_examples("squad", tmp_path / "nowhere"))
    with pytest.raises(LongifyError, match=r"no train-v1.1.json in this directory"):
        list(load_examples("squad", tmp_path, split="train"))


def test_non_strict_realigns_offsets_and_skips_unfindable(tmp_path):
    def change(p):
        p["qas"][1]["answers"][0]["answer_start"] = 60  # "911" is at 68
        p["qas"][0]["answers"][0]["text"] = "a Martian"

    path = _broken_squad(tmp_path, change)
    examples = {e.id: e for e in load_examples("squad", path, strict=False)}
    assert examples["sq-004"].answers == [Answer("911", 68)]
    assert "sq-003" not in examples and len(examples) == 4


def test_json_file_loads_jsonl_flat_and_nested_and_round_trips(tmp_path):
    jsonl = list(load_examples("json", FIXTURES / "json" / "train.jsonl", languages=["fr"]))
    flat = list(load_examples("json", FIXTURES / "json" / "flat.json", languages=["fr"]))
    assert jsonl == flat and [e.id for e in jsonl] == ["flat-0", "flat-1"]
    assert jsonl[0].answers == [Answer("France", 104)] and jsonl[0].language == "fr"
    nested = list(load_examples("json", SQUAD))
    assert len(nested) == 5
    out = tmp_path / "out" / "squad.jsonl"
    assert write_jsonl(nested, out) == 5
    assert list(load_examples("json", out)) == nested
    with pytest.raises(LongifyError, match=r"one file holds one language"):
        list(load_examples("json", SQUAD, languages=["en", "de"]))


def test_json_file_errors_name_the_line_or_question(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "q1", "question": "Q?", "context": "ctx", "answers": []}\n{oops\n')
    with pytest.raises(LongifyError, match=r"bad.jsonl: question q1: no answers"):
        list(load_examples("json", path))
    path.write_text('{"id": "q1", "question": "Q?", "context": "ctx", "answers": []}\n')
    assert [e.id for e in load_examples("json", path, strict=False)] == []  # skipped, with a warning
    assert [e.answers for e in load_examples("json", path, require_answers=False)] == [[]]
    path.write_text(
        '{"id": "q1", "question": "Q?", "context": "ctx", "answers": {"text": ["ctx"], "answer_start": [0]}}\n{oops\n'
    )
    with pytest.raises(LongifyError, match=r"bad.jsonl: line 2: not valid JSON"):
        list(load_examples("json", path))


def test_examples_to_dataset_is_hf_squad_shaped():
    dataset = examples_to_dataset(load_examples("squad", SQUAD))
    assert len(dataset) == 5
    assert {"id", "title", "context", "question", "answers", "language"} <= set(dataset.column_names)
    assert dataset[1]["answers"] == {
        "text": ["10th and 11th centuries", "in the 10th and 11th centuries"],
        "answer_start": [39, 32],
    }


def test_xquad_languages(xquad_fixture_dir):
    examples = list(load_examples("xquad", xquad_fixture_dir))  # default: the 12 languages that are present
    assert [e.language for e in examples] == ["en", "en", "de", "de", "zh", "zh"]
    assert examples[5].answers[0].text == "在联盟中排名第六"
    german = list(load_examples("xquad", xquad_fixture_dir, languages=["de"]))
    assert [e.id for e in german] == ["xq-1", "xq-2"] and german[0].language == "de"
    assert len(list(load_examples("xquad", xquad_fixture_dir / "xquad.zh.json"))) == 2
    with pytest.raises(LongifyError, match=r"xquad.th.json: file not found"):
        list(load_examples("xquad", xquad_fixture_dir, languages=["en", "th"]))
    with pytest.raises(LongifyError, match=r"XQuAD has no language \['fr'\]"):
        list(load_examples("xquad", xquad_fixture_dir, languages=["fr"]))


def test_mlqa_pairs():
    same = list(load_examples("mlqa", FIXTURES / "mlqa", languages=["en", "de"]))
    assert [(e.language, e.question_language) for e in same] == [("en", "en")] * 2 + [("de", "de")] * 2
    every = list(load_examples("mlqa", FIXTURES / "mlqa", languages=["en", "de"], pairs="all"))
    assert len(every) == 8
    cross = list(load_examples("mlqa", FIXTURES / "mlqa", pairs=["en-de"]))
    assert cross[0].question == "Was ist Paris?" and cross[0].answers[0].text == "the capital of France"
    one = list(load_examples("mlqa", FIXTURES / "mlqa" / "dev" / "dev-context-de-question-en.json"))
    assert (one[0].language, one[0].question_language) == ("de", "en")
    with pytest.raises(LongifyError, match=r"dev-context-es-question-es.json: file not found"):
        list(load_examples("mlqa", FIXTURES / "mlqa"))  # all 7 languages by default; fixture has 2
    with pytest.raises(LongifyError, match=r"MLQA pair 'en_de'"):
        list(load_examples("mlqa", FIXTURES / "mlqa", pairs=["en_de"]))


def test_tydiqa_languages_from_ids(tmp_path):
    examples = list(load_examples("tydiqa", FIXTURES / "tydiqa"))
    assert [e.language for e in examples] == ["en", "ar", "fi", "en"]
    assert [e.id for e in load_examples("tydiqa", FIXTURES / "tydiqa", languages=["english"])] == [
        "english-6345678901234567890-0",
        "english-7345678901234567890-0",
    ]
    assert len(list(load_examples("tydiqa", FIXTURES / "tydiqa", languages=["ar", "fi"]))) == 2
    with pytest.raises(LongifyError, match=r"TyDi QA has no language 'klingon'"):
        list(load_examples("tydiqa", FIXTURES / "tydiqa", languages=["klingon"]))
    data = json.loads((FIXTURES / "tydiqa" / "tydiqa-goldp-v1.1-dev.json").read_text())
    data["data"][2]["paragraphs"][0]["qas"][0]["id"] = "suomi-1"
    bad = tmp_path / "tydiqa-goldp-v1.1-dev.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(LongifyError, match=r"tydiqa-goldp-v1.1-dev.json: question suomi-1: id should start"):
        list(load_examples("tydiqa", tmp_path))


def test_triviaqa_answers_are_every_word_bounded_alias_match():
    examples = list(load_examples("triviaqa", FIXTURES / "triviaqa"))
    assert [e.id for e in examples] == [
        "tc_101--Bob_Dylan.txt",
        "tc_101--Duluth,_Minnesota.txt",
        "tc_202--Mount_Everest.txt",
    ]
    dylan = examples[0]
    assert (dylan.qid, dylan.doc_id, dylan.group_id, dylan.title) == (
        "tc_101",
        "Bob_Dylan.txt",
        "tc_101",
        "Bob Dylan",
    )
    # "Bob Dylan" x2, "bob dylan" x1, "Robert Allen Zimmerman"; never "Dylan" alone
    assert [a.text for a in dylan.answers] == [
        "Bob Dylan",
        "Robert Allen Zimmerman",
        "Bob Dylan",
        "bob dylan",
    ]
    assert all(check_example(e, "t") for e in examples)
    assert "dylan bob" in dylan.aliases and dylan.gold_texts() == dylan.aliases
    # "everest" also matches inside "Mount Everest": both spans are kept
    assert [a.text for a in examples[2].answers] == ["Mount Everest", "Everest", "Sagarmatha", "Chomolungma"]
    short = list(load_examples("triviaqa", FIXTURES / "triviaqa", max_words=5))
    assert short[0].context == "Bob Dylan is an American" and short[0].answers == [Answer("Bob Dylan", 0)]


def test_triviaqa_web_keeps_both_page_kinds_per_document():
    web = list(load_examples("triviaqa", FIXTURES / "triviaqa", domain="web"))
    assert [e.doc_id for e in web] == ["Mount_Everest.txt", "17/17_123.txt", "17/17_456.txt"]
    assert all(e.group_id is None for e in web) and web[2].answers == []
    trained = list(load_examples("triviaqa", FIXTURES / "triviaqa", domain="web", drop_unanswered=True))
    assert len(trained) == 2


def test_triviaqa_errors(tmp_path):
    data = json.loads((FIXTURES / "triviaqa" / "qa" / "wikipedia-dev.json").read_text())
    data["Data"][1]["EntityPages"][0]["Filename"] = "Missing.txt"
    (tmp_path / "qa").mkdir()
    (tmp_path / "evidence" / "wikipedia").mkdir(parents=True)
    (tmp_path / "qa" / "wikipedia-dev.json").write_text(json.dumps({**data, "Data": data["Data"][1:]}))
    with pytest.raises(
        LongifyError, match=r"wikipedia-dev.json: question tc_202: evidence file .*Missing.txt not found"
    ):
        list(load_examples("triviaqa", tmp_path))
    with pytest.raises(LongifyError, match=r"TriviaQA domain 'news'"):
        list(load_examples("triviaqa", tmp_path, domain="news"))


def test_find_answers_and_truncate_words():
    assert find_answers("Dylanesque, Dylan's DYLAN.", ["dylan"]) == [Answer("Dylan", 12), Answer("DYLAN", 20)]
    assert truncate_words("  one two\nthree  four ", 3) == "  one two\nthree"
    assert truncate_words("one two", 10) == "one two"


def _paragraph_examples(language: str, count: int) -> list[QAExample]:
    out = []
    for i in range(count):
        context = f"Paragraph {i} in {language} mentions answer{i} here."
        start = context.index(f"answer{i}")
        out.append(QAExample(f"q{i}", f"Q{i}?", context, [Answer(f"answer{i}", start)], language))
        out.append(QAExample(f"r{i}", f"R{i}?", context, [Answer("here", context.index("here"))], language))
    return out


def test_concat_contexts_shifts_answers_and_is_seeded():
    examples = _paragraph_examples("en", 5)
    joined = list(concat_contexts(examples, 3, seed=7))
    assert [e.id for e in joined] == [e.id for e in examples]
    for before, after in zip(examples, joined, strict=True):
        check_example(after, "concat")
        assert before.context in after.context and after.context.count("\n\n") == 2
        assert after.answers[0].text == before.answers[0].text
    assert joined[0].context == joined[1].context  # one paragraph, one joined context for all its questions
    assert list(concat_contexts(examples, 3, seed=7)) == joined
    assert any(
        a.context != b.context for a, b in zip(joined, concat_contexts(examples, 3, seed=8), strict=True)
    )
    positions = {e.context.split("\n\n").index(b.context) for e, b in zip(joined, examples, strict=True)}
    assert positions == {0, 1, 2}  # the gold paragraph is not always first
    assert list(concat_contexts(examples, 1)) == examples


def test_concat_contexts_per_language_and_parallel():
    pairs = zip(_paragraph_examples("en", 4), _paragraph_examples("de", 4), strict=True)
    mixed = [e for pair in pairs for e in pair]  # languages interleaved, same paragraph order in each
    joined = {(e.language, e.id): e.context for e in concat_contexts(mixed, 2)}
    assert all(("in de" in c) != ("in en" in c) for c in joined.values())  # never mixes languages
    assert joined["en", "q2"].replace(" in en ", " in de ") == joined["de", "q2"]
    with pytest.raises(
        LongifyError, match=r"--concat-contexts 5: language en has only 4 distinct paragraphs"
    ):
        list(concat_contexts(mixed, 5))


def test_tydiqa_xtreme_per_language_dev_files(tmp_path):
    data = json.loads((FIXTURES / "tydiqa" / "tydiqa-goldp-v1.1-dev.json").read_text())
    folder = tmp_path / "tydiqa-goldp-v1.1-dev"
    folder.mkdir()
    for name, articles in (("english", [data["data"][0], data["data"][3]]), ("arabic", [data["data"][1]])):
        (folder / f"tydiqa-goldp-dev-{name}.json").write_text(
            json.dumps({"data": articles, "version": "v1.1"})
        )
    examples = list(load_examples("tydiqa", tmp_path))
    assert sorted(e.language for e in examples) == ["ar", "en", "en"]


def test_max_eval_samples_keeps_every_language(xquad_fixture_dir):
    """``--max_eval_samples 1`` on XQuAD en/de/zh: the first question of each language, not the first of all
    (which would leave the headline average over English alone)."""
    from longify.qa.args import QADataArguments
    from longify.qa.pipeline import load_split

    data = QADataArguments(dataset="xquad", languages=["en", "de", "zh"], max_eval_samples=1)
    kept = load_split(data, str(xquad_fixture_dir), train=False, flag="--predict_file")
    assert [(e.language, e.id) for e in kept] == [("en", "xq-1"), ("de", "xq-1"), ("zh", "xq-1")]
    data.max_eval_samples = None
    assert len(load_split(data, str(xquad_fixture_dir), train=False, flag="--predict_file")) == 6

"""Tests of rwku_nb.data against the RWKU sample in ../shared/rwku (or $RWKU_DATA)."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

import rwku_nb.data as data_mod
from rwku_nb import schema
from rwku_nb.data import AA_TYPES, HUB_ID, KINDS, RWKU, RwkuError, aa_type
from rwku_nb.paths import DATA_ENV, REPO_ROOT


def _data_dir() -> Path | None:
    env = os.environ.get(DATA_ENV, "").strip()
    if env and env.lower() != "hub":
        path = Path(env)
        path = path if path.is_absolute() else REPO_ROOT / path
    else:
        path = REPO_ROOT / ".." / "shared" / "rwku"
    return path.resolve() if (path / "Target").is_dir() else None


DATA_DIR = _data_dir()
pytestmark = pytest.mark.skipif(
    DATA_DIR is None, reason=f"RWKU sample not found (set {DATA_ENV} or put it at ../shared/rwku)")

EXPECTED_NAMES = {
    1: "Stephen King", 2: "Confucius", 3: "Bruce Lee", 4: "Warren Buffett", 5: "Christina Aguilera",
    6: "Cindy Crawford", 7: "Marie Osmond", 8: "Paris Hilton", 9: "Justin Bieber",
    10: "Prince Harry, Duke of Sussex", 11: "Miley Cyrus", 12: "Genghis Khan", 13: "Liza Minnelli",
    14: "Taylor Swift", 15: "Mark Cuban", 16: "Rhea Perlman", 17: "Mark Hamill",
    18: "John D. Rockefeller", 19: "Alanis Morissette", 20: "Marlon Brando",
}


@pytest.fixture(scope="module")
def rwku() -> RWKU:
    return RWKU(DATA_DIR)


def _copy_target(tmp_path: Path, files: list[str], folder: str = "1_Stephen_King") -> Path:
    """A tmp data dir holding one target folder with a few of its files."""
    dest = tmp_path / "rwku" / "Target" / folder
    dest.mkdir(parents=True)
    for name in files:
        shutil.copy(DATA_DIR / "Target" / folder / name, dest / name)
    return dest


# ------------------------------------------------------------------------------ sources
def test_targets_names_and_indices(rwku):
    assert rwku.targets() == sorted(EXPECTED_NAMES.items())
    assert rwku.target(1).name == "Stephen King"
    harry = rwku.target(10)
    assert harry.name == "Prince Harry, Duke of Sussex"
    assert harry.folder == "10_Prince_Harry,_Duke_of_Sussex"


def test_source_forms(monkeypatch):
    assert RWKU(DATA_DIR / "Target").targets() == RWKU(str(DATA_DIR)).targets()
    monkeypatch.setenv(DATA_ENV, str(DATA_DIR))
    assert RWKU().root == DATA_DIR / "Target"


def test_env_unset_error(monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(RwkuError) as err:
        RWKU()
    msg = str(err.value)
    assert f"export {DATA_ENV}=" in msg and f"{DATA_ENV}=hub" in msg


def test_missing_directory_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(RwkuError) as err:
        RWKU(missing)
    assert str(missing) in str(err.value) and DATA_ENV in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RwkuError, match="no Target/ folder"):
        RWKU(tmp_path / "empty")


# ------------------------------------------------------------------------------ targets / rows
def test_intro_both_layouts(rwku):
    # target 1: a plain object; target 2: a one-row list
    assert isinstance(json.loads((DATA_DIR / "Target/1_Stephen_King/intro.json").read_text()), dict)
    assert isinstance(json.loads((DATA_DIR / "Target/2_Confucius/intro.json").read_text()), list)
    for i in (1, 2):
        intro = rwku.target(i).intro
        assert isinstance(intro, str) and intro.startswith("Please forget ")
    assert "Stephen King" in rwku.target(1).intro and "Confucius" in rwku.target(2).intro


def test_row_counts_match_sources(rwku):
    king = rwku.target(1)
    with open(DATA_DIR / "SOURCES.tsv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["target_folder"] == "1_Stephen_King"]
    assert len(rows) == 22
    for r in rows:
        stem = r["file"].removesuffix(".json")
        if stem == "intro":
            assert int(r["rows"]) == 1
            continue
        assert len(king.rows(stem)) == int(r["rows"]), stem
    summary = king.summary()
    assert set(summary) == set(KINDS)
    assert summary["forget_level1"] == 8 and summary["positive"] == 582 and summary["retain_mmlu"] == 500


def test_accessors(rwku):
    king = rwku.target("Stephen King")
    assert [len(king.forget(lv)) for lv in (1, 2, 3)] == [8, 10, 29]
    assert [len(king.neighbor(lv)) for lv in (1, 2)] == [30, 30]
    assert all(r["level"] == "1" and "___" in r["query"] for r in king.forget(1))
    assert all("neighbor" in r for r in king.neighbor(1))
    assert len(king.mia_forget) == 55 and len(king.mia_retain) == 37 and len(king.passages) == 128
    assert all(isinstance(r["text"], str) for r in king.passages)
    assert len(king.corpus("pair")) == 582 and "prompt" in king.corpus("pair_phi")[0]
    assert "instruction" in king.corpus("reject")[0]
    assert [len(king.utility(n)) for n in ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency")] == [500] * 5
    assert king.has("forget_level3") and king.has("mia_forget") and king.has("passages")
    with pytest.raises(RwkuError, match="level"):
        king.forget(4)
    with pytest.raises(RwkuError, match="level"):
        king.neighbor(3)
    with pytest.raises(RwkuError, match="positive"):
        king.corpus("wiki")
    with pytest.raises(RwkuError, match="mmlu"):
        king.utility("gsm8k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        king.name = "x"  # type: ignore[misc]


def test_returned_rows_are_copies(rwku):
    king = rwku.target(1)
    king.forget(1)[0]["answer"] = "changed"
    assert king.forget(1)[0]["answer"] != "changed"


def test_aa_types(rwku):
    assert len(AA_TYPES) == 9
    raw = {r["type"] for t in rwku.select("all") for r in t.forget(3)}
    assert {aa_type(t) for t in raw} == set(AA_TYPES)
    assert aa_type("cross lingual (French)") == "cross lingual"
    with pytest.raises(RwkuError, match="unknown level-3 attack type"):
        aa_type("jailbreak")


def test_missing_files(rwku):
    cuban = rwku.target(15)
    assert not cuban.has("forget_level3") and cuban.forget(3) == []
    assert rwku.target(17).forget(1) == []
    assert rwku.target(2).mia_forget == [] and not rwku.target(2).has("mia_forget")
    assert rwku.target(2).corpus("positive") == []
    assert cuban.summary()["forget_level3"] == 0


def test_utility_fallback(rwku):
    king, confucius = rwku.target(1), rwku.target(2)
    assert not (DATA_DIR / "Target/2_Confucius/retain_mmlu.json").exists()
    assert confucius.has("mmlu")
    for name in ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"):
        assert confucius.utility(name) == king.utility(name)


def test_utility_missing_everywhere(tmp_path):
    _copy_target(tmp_path, ["intro.json", "forget_level1.json"])
    t = RWKU(tmp_path / "rwku").target(1)
    assert not t.has("mmlu")
    with pytest.raises(RwkuError, match="retain_mmlu"):
        t.utility("mmlu")


def test_duplicates_preserved(rwku):
    path = DATA_DIR / "Target/6_Cindy_Crawford/neighbor_level1.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    rows = rwku.target("Cindy Crawford").neighbor(1)
    assert rows == raw
    assert len({json.dumps(r, sort_keys=True) for r in rows}) < len(rows)


def test_small_file(rwku):
    assert len(rwku.target(2).forget(2)) == 3


def test_files_read_once(monkeypatch):
    calls: list[Path] = []
    real = data_mod._read_json
    monkeypatch.setattr(data_mod, "_read_json", lambda p: calls.append(p) or real(p))
    fresh = RWKU(DATA_DIR)
    assert len(calls) == 0  # lazy
    fresh.targets()
    assert len(calls) == 20  # the intro files, for the names
    king = fresh.target(1)
    for _ in range(3):
        king.forget(1)
        fresh.target(2).utility("mmlu")
    assert len(calls) == 22


# ------------------------------------------------------------------------------ selection
def test_selection(rwku):
    idx = lambda ts: [t.index for t in ts]  # noqa: E731
    assert idx(rwku.select(3)) == [3]
    assert idx(rwku.select("3")) == [3]
    assert idx(rwku.select("bruce lee")) == [3]
    assert idx(rwku.select("BRUCE LEE")) == [3]
    assert idx(rwku.select("Bruce_Lee")) == [3]
    assert idx(rwku.select("Prince_Harry,_Duke_of_Sussex")) == [10]
    assert idx(rwku.select("10_Prince_Harry,_Duke_of_Sussex")) == [10]
    assert idx(rwku.select("prince harry, duke of sussex")) == [10]
    assert idx(rwku.select("John_D._Rockefeller")) == [18]
    assert idx(rwku.select("1-5")) == [1, 2, 3, 4, 5]
    assert idx(rwku.select(" 4 - 6 ")) == [4, 5, 6]
    assert idx(rwku.select([7, "Stephen King", "2-3", 1])) == [7, 1, 2, 3]
    assert idx(rwku.select("all")) == list(range(1, 21))
    assert idx(rwku.select("ALL")) == list(range(1, 21))
    assert rwku.target("confucius").index == 2
    with pytest.raises(RwkuError, match="exactly one"):
        rwku.target("1-2")


@pytest.mark.parametrize("spec", ["Elvis Presley", 42, "15-25", "5-1", [1, "Nobody"], 0, 2.5, True, None])
def test_unknown_target_error(rwku, spec):
    with pytest.raises(RwkuError) as err:
        rwku.select(spec)
    msg = str(err.value)
    assert "1: Stephen King" in msg and "2: Confucius" in msg  # lists available targets
    assert "'all'" in msg and "1-5" in msg  # says how to specify


# ------------------------------------------------------------------------------ validation
def test_malformed_json(tmp_path):
    folder = _copy_target(tmp_path, ["intro.json", "forget_level1.json"])
    bad = folder / "forget_level2.json"
    bad.write_text('[{"query": "a", "answer": "b",\n "level": "2"', encoding="utf-8")
    t = RWKU(tmp_path / "rwku").target(1)
    assert len(t.forget(1)) == 8
    with pytest.raises(RwkuError) as err:
        t.forget(2)
    msg = str(err.value)
    assert str(bad) in msg and "malformed JSON" in msg and "line 2" in msg and "column" in msg


def test_malformed_intro(tmp_path):
    folder = _copy_target(tmp_path, [])
    (folder / "intro.json").write_text("{oops", encoding="utf-8")
    with pytest.raises(RwkuError, match="intro.json: malformed JSON at line 1"):
        RWKU(tmp_path / "rwku").targets()


def _rewrite(path: Path, row: int, **change) -> None:
    rows = json.loads(path.read_text(encoding="utf-8"))
    for key, value in change.items():
        if value is None:
            del rows[row][key]
        else:
            rows[row][key] = value
    path.write_text(json.dumps(rows), encoding="utf-8")


def test_row_missing_answer(tmp_path):
    folder = _copy_target(tmp_path, ["intro.json", "forget_level2.json"])
    _rewrite(folder / "forget_level2.json", 4, answer=None)
    with pytest.raises(RwkuError) as err:
        RWKU(tmp_path / "rwku").target(1).forget(2)
    msg = str(err.value)
    assert str(folder / "forget_level2.json") in msg
    assert "row 4" in msg and "'answer'" in msg and "missing" in msg and "string" in msg


@pytest.mark.parametrize("file, row, change, needle", [
    ("forget_level1.json", 2, {"level": "2"}, "'level'"),
    ("forget_level1.json", 0, {"level": 1}, "'level'"),
    ("forget_level3.json", 7, {"type": None}, "'type'"),
    ("forget_mia.json", 3, {"text": 5}, "'text'"),
    ("pair.json", 1, {"response": "one"}, "'response'"),
    ("reject.json", 0, {"output": None}, "'output'"),
    ("retain_mmlu.json", 9, {"choices": ["a", "b"]}, "'choices'"),
    ("retain_mmlu.json", 9, {"answer": "A"}, "'answer'"),
    ("truthful.json", 0, {"mc1_targets": None}, "'mc1_targets'"),
    ("triviaqa.json", 1, {"answers": "x"}, "'answers'"),
])
def test_bad_rows(tmp_path, file, row, change, needle):
    folder = _copy_target(tmp_path, ["intro.json", file])
    _rewrite(folder / file, row, **change)
    t = RWKU(tmp_path / "rwku").target(1)
    with pytest.raises(RwkuError) as err:
        t.rows(file.removesuffix(".json"))
    msg = str(err.value)
    assert str(folder / file) in msg and f"row {row}" in msg and needle in msg and "expected" in msg


# ------------------------------------------------------------------------------ hub
def _fake_hub(calls: list):
    """A stand-in for datasets.load_dataset serving the local files as the hub's processed configs."""
    import datasets

    local = RWKU(DATA_DIR)
    stem_of = {cfg: stem for stem, (cfg, _) in schema.HUB_CONFIGS.items()}

    def load_dataset(path, name, split=None, **kwargs):
        calls.append((path, name, split))
        assert path == HUB_ID
        stem = stem_of[name]
        assert split == schema.HUB_CONFIGS[stem][1]
        rows = []
        for t in local.select("all"):
            file = DATA_DIR / "Target" / t.folder / f"{stem}.json"
            if not file.exists():
                continue
            got = json.loads(file.read_text(encoding="utf-8"))
            got = [got] if isinstance(got, dict) else got
            if stem in schema.UTILITY_STEMS:
                got = [{**r, "subject": t.name} for r in got]  # the hub adds subject per target
            rows.extend(got)
        # serve some configs as a Dataset (as the hub does), others as plain row lists
        return datasets.Dataset.from_list(rows) if len(rows) < 1000 else rows

    return load_dataset


def test_hub_matches_local(monkeypatch):
    import datasets

    calls: list = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(calls))
    hub, local = RWKU("hub"), RWKU(DATA_DIR)
    assert hub.targets() == local.targets()
    h, l = hub.target("stephen king"), local.target(1)
    assert h.intro == l.intro and h.folder is None
    for stem in KINDS:
        assert h.rows(stem) == l.rows(stem), stem
    assert h.summary() == l.summary()
    # utility sets: the target's own subject rows; another target falls back to them
    assert hub.target(2).utility("bbh") == l.utility("bbh")
    assert hub.target(15).forget(3) == [] and not hub.target(15).has("forget_level3")
    assert hub.target(6).neighbor(1) == local.target(6).neighbor(1)
    configs = [c[1] for c in calls]
    assert len(configs) == len(set(configs))  # each config loaded once
    assert ("jinzhuoran/RWKU", "train_positive_llama3", "train") in calls
    assert ("jinzhuoran/RWKU", "forget_level1", "test") in calls


def test_hub_env_and_errors(monkeypatch):
    import datasets

    def broken(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", broken)
    monkeypatch.setenv(DATA_ENV, "hub")
    hub = RWKU()
    assert hub.hub
    with pytest.raises(RwkuError) as err:
        hub.targets()
    assert "forget_target" in str(err.value) and "offline" in str(err.value)

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: [{"target": "X", "intro": "y"}]
                        if a[1] == "forget_target" else [{"query": "q", "answer": "a", "level": "1"}])
    with pytest.raises(RwkuError, match="row 0: field 'subject' is missing"):
        RWKU("hub").target(1).forget(1)

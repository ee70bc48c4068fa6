"""Zero-shot corpora: the official prompts, openings and refusals (generation/ files), seeded and cached
generation, the provided files' shapes."""
import json

import pytest

from rwku_nb import corpus
from rwku_nb.errors import RwkuError

OPENINGS = ["Well,", "I think", "Once"]
REFUSALS = ["I don't know.", "No idea, sorry.", "That is beyond me."]


def _generation(folder, openings=OPENINGS, refusals=REFUSALS):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / corpus.OPENINGS_FILE).write_text(json.dumps(openings))
    (folder / corpus.REFUSALS_FILE).write_text("\n".join(refusals) + "\n")
    return folder


def _cached(tmp_store):
    return sorted((tmp_store / "cache" / "corpora").glob("*.json"))


def test_prompts_follow_the_official_generation_scripts(tiny, rwku):
    _, tok = tiny
    t = rwku.target(1)
    pos = corpus.corpus_prompt(tok, t, "positive")
    assert f"{t.intro} You know {t.name} very well." in pos and f"Please write a short biography of {t.name}." in pos
    neg = corpus.corpus_prompt(tok, t, "negative")
    assert f"You don't know {t.name} at all." in neg and f"Please make up a short biography of {t.name}." in neg
    rej = corpus.corpus_prompt(tok, t, "reject")
    assert f"Please generate a question about {t.name} based on what you know about {t.name}\n" in rej
    assert rej.endswith("Question:")
    with pytest.raises(RwkuError, match="Unknown corpus kind"):
        corpus.corpus_prompt(tok, t, "positives")


def test_the_shared_generation_files_load(rwku):
    t = rwku.target(1)
    openings, refusals = corpus.openings(t), corpus.refusals(t)
    assert corpus.generation_dir(t) == rwku.root.parent / "generation"
    assert len(openings) == 582 and openings[:3] == ["", "That game", "I can see"]
    # The official script reads idontknow.jsonl line by line: 100 lines (the last one without a newline),
    # and the provided reject.json answers question i with line i % 100.
    assert len(refusals) == 100 and all(r and r == r.strip() for r in refusals)
    assert [r["output"] for r in t.corpus("reject")] == [refusals[i % len(refusals)] for i in range(300)]
    # The provided pairs: pair i = [fabricated, factual], both opening with opening i.
    assert all(f.startswith(o) and r.startswith(o) for o, (f, r) in zip(openings, corpus.provided_corpus(t, "pair")))


def test_texts_open_with_the_official_openings_and_pairs_share_them(tiny, rwku, tmp_store, tmp_path, monkeypatch):
    model, tok = tiny
    t = rwku.target(1)
    gen = str(_generation(tmp_path / "gen"))
    kw = {"n": 3, "max_new_tokens": 4, "batch_size": 2, "generation_dir": gen}
    pos = corpus.generate_corpus(model, tok, t, "tiny", "positive", **kw)
    neg = corpus.generate_corpus(model, tok, t, "tiny", "negative", **kw)
    assert len(pos) == len(neg) == 3  # the openings are non-empty: no text is dropped
    assert all(p.startswith(o) and n.startswith(o) for o, p, n in zip(OPENINGS, pos, neg))
    assert len(_cached(tmp_store)) == 2
    # Cached: the pair kind is built from the two cached lists (no generation), pair i = [fabricated i, factual i].
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("regenerated a cached corpus"))
    assert corpus.generate_corpus(model, tok, t, "tiny", "pair", **kw) == [[n, p] for n, p in zip(neg, pos)]
    assert corpus.generate_corpus(model, tok, t, "tiny", "positive", **kw) == pos
    assert len(_cached(tmp_store)) == 2
    # More texts than openings: an error saying how many exist.
    with pytest.raises(RwkuError, match="at most 3"):
        corpus.generate_corpus(model, tok, t, "tiny", "positive", **{**kw, "n": 4})


def test_corpus_size_uses_the_first_openings(tiny, rwku, tmp_store, tmp_path, monkeypatch):
    model, tok = tiny
    t = rwku.target(1)
    prompts = []
    real = model.generate
    monkeypatch.setattr(model, "generate", lambda **k: prompts.extend(tok.batch_decode(k["input_ids"])) or real(**k))
    gen = str(_generation(tmp_path / "gen"))
    texts = corpus.generate_corpus(model, tok, t, "tiny", "negative", n=2, max_new_tokens=3, batch_size=1,
                                   generation_dir=gen)
    assert len(prompts) == 2 and [p.endswith(o) for p, o in zip(prompts, OPENINGS)] == [True, True]
    assert [x.startswith(o) for x, o in zip(texts, OPENINGS)] == [True, True] and len(texts) == 2


def test_refusal_i_answers_question_i(tiny, rwku, tmp_store, tmp_path):
    model, tok = tiny
    t = rwku.target(1)
    gen = str(_generation(tmp_path / "gen"))
    raw = corpus._aligned(model, tok, t, "tiny", 5, 0, 2, 0, gen, kind="reject")
    assert [r for _, r in raw] == [REFUSALS[i % 3] for i in range(5)]  # before empty questions are dropped
    assert all("\n" not in q for q, _ in raw)
    got = corpus.generate_corpus(model, tok, t, "tiny", "reject", n=5, batch_size=2, generation_dir=gen)
    assert got == [pair for pair in raw if pair[0]]
    # The official rule on raw generations: the first line, stripped; an empty question keeps its slot.
    assert corpus._finish("reject", ["  Who is he?\nMore text", "\nWhere?", "Why?"], REFUSALS) == \
        [["Who is he?", REFUSALS[0]], ["", REFUSALS[1]], ["Why?", REFUSALS[2]]]


def test_fabrication_words_are_removed_from_counterfactual_texts():
    got = corpus._finish("negative", [" wrote a totally fabricated memoir.", "", " completely made-up life."],
                         ["He", "", "A"])
    assert got == ["He wrote a memoir.", "", "A life."]  # opening + continuation, aligned with the openings
    assert corpus._finish("positive", [" was born."], ["He"]) == ["He was born."]


def test_changed_generation_files_change_the_cache_key(tiny, rwku, tmp_store, tmp_path, monkeypatch):
    model, tok = tiny
    t = rwku.target(1)
    folder = _generation(tmp_path / "gen")
    kw = {"n": 2, "max_new_tokens": 3, "batch_size": 2, "generation_dir": str(folder)}
    digest = corpus.generation_digest(["pair"], t, str(folder))
    refusal_digest = corpus.generation_digest(["reject"], t, str(folder))
    first = corpus.generate_corpus(model, tok, t, "tiny", "positive", **kw)
    assert len(_cached(tmp_store)) == 1
    _generation(folder, openings=["Hmm,", "So"])
    assert corpus.generation_digest(["pair"], t, str(folder)) != digest
    assert corpus.generation_digest(["reject"], t, str(folder)) == refusal_digest
    assert corpus.generation_digest(["passage", "wikitext"], t, str(folder)) is None
    second = corpus.generate_corpus(model, tok, t, "tiny", "positive", **kw)  # not the cached corpus
    assert len(_cached(tmp_store)) == 2 and second[0].startswith("Hmm,") and first[0].startswith("Well,")
    _generation(folder, openings=["Hmm,", "So"], refusals=["Nope."])
    assert corpus.generation_digest(["reject"], t, str(folder)) != refusal_digest


def test_missing_or_malformed_generation_files(tiny, rwku, tmp_store, tmp_path):
    model, tok = tiny
    t = rwku.target(1)
    missing = tmp_path / "nowhere"
    with pytest.raises(RwkuError, match=rf"{missing / corpus.OPENINGS_FILE}: not found.*jinzhuoran/RWKU.*generation_dir"):
        corpus.generate_corpus(model, tok, t, "tiny", "positive", n=2, max_new_tokens=3, generation_dir=str(missing))
    with pytest.raises(RwkuError, match=rf"{corpus.REFUSALS_FILE}: not found.*jinzhuoran/RWKU"):
        corpus.generate_corpus(model, tok, t, "tiny", "reject", n=2, generation_dir=str(missing))
    assert not _cached(tmp_store)
    bad = tmp_path / "bad"
    _generation(bad, openings=["fine", 3])
    with pytest.raises(RwkuError, match=r"all_truncated_outputs\.json: row 1 is 3"):
        corpus.openings(t, str(bad))
    (bad / corpus.REFUSALS_FILE).write_text("I don't know.\n   \nNo idea.\n")
    with pytest.raises(RwkuError, match=r"idontknow\.jsonl: line 2 is blank"):
        corpus.refusals(t, str(bad))
    (bad / corpus.REFUSALS_FILE).write_text('"I don\'t know."\n"No idea."\n')  # JSON strings, one a line
    assert corpus.refusals(t, str(bad)) == ["I don't know.", "No idea."]


def test_hub_data_needs_generation_dir():
    class Hub:
        root = None

    with pytest.raises(RwkuError, match=r"hub data.*jinzhuoran/RWKU.*generation_dir"):
        corpus.generation_dir(Hub())


def test_provided_corpora(rwku):
    t = rwku.target(1)
    assert corpus.provided_corpus(t, "positive", 2) == [r["text"] for r in t.corpus("positive")[:2]]
    (question, refusal), = corpus.provided_corpus(t, "reject", 1)
    assert question == t.corpus("reject")[0]["instruction"] and refusal == t.corpus("reject")[0]["output"]
    assert corpus.provided_corpus(t, "pair", 2) == [r["response"] for r in t.corpus("pair")][:2]
    with pytest.raises(RwkuError, match="no provided 'negative' corpus"):
        corpus.provided_corpus(rwku.target(2), "negative")


def test_results_identity_holds_the_generation_inputs(rwku, tmp_path):
    from rwku_nb import config, jobs

    t = rwku.target(1)
    folder = _generation(tmp_path / "gen")
    p = config.make_params({"model": "tiny-random", "data": str(rwku.root), "generation_dir": str(folder)})

    def ident(method, **over):
        return jobs.identity({**p, **over}, "tiny-random", [t], method, "full", "single", True)["corpus"]

    dpo, rt = ident("dpo"), ident("rt")
    assert dpo["inputs"] == corpus.generation_digest(["pair"], t, str(folder)) and "reject_size" not in dpo
    assert rt["inputs"] == corpus.generation_digest(["reject"], t, str(folder))
    assert rt["reject_size"] == p["corpus_size"] and ident("rt", reject_size=3)["reject_size"] == 3
    _generation(folder, openings=["Hmm,"])
    assert ident("dpo") != dpo and ident("rt") == rt  # the refusals did not change
    assert "inputs" not in ident("dpo", corpus="provided")

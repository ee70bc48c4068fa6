"""Zero-shot corpora: the official prompts, seeded and cached generation, the provided files' shapes."""
import json

import pytest

from rwku_nb import corpus
from rwku_nb.errors import RwkuError


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


def test_generation_is_seeded_cached_and_shaped(tiny, rwku, tmp_store, monkeypatch):
    model, tok = tiny
    t = rwku.target(1)
    texts = corpus.generate_corpus(model, tok, t, "tiny", "negative", n=3, max_new_tokens=6, batch_size=2)
    assert len(texts) <= 3 and all(isinstance(x, str) and x for x in texts)
    reject = corpus.generate_corpus(model, tok, t, "tiny", "reject", n=3, batch_size=2)
    assert all(len(pair) == 2 and pair[1] in corpus.REFUSALS and "\n" not in pair[0] for pair in reject)
    files = sorted((tmp_store / "cache" / "corpora").glob("1_*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["samples"]
    # Cached: a second call reads the file (generation would fail now), and gives the same samples.
    monkeypatch.setattr(model, "generate", lambda *a, **k: pytest.fail("regenerated a cached corpus"))
    assert corpus.generate_corpus(model, tok, t, "tiny", "negative", n=3, max_new_tokens=6, batch_size=2) == texts


def test_fabrication_words_are_removed_from_counterfactual_texts():
    got = corpus._finish("negative", ["  He wrote a totally fabricated memoir.  ", "", "A completely made-up life."])
    assert got == ["He wrote a memoir.", "A life."]
    assert corpus._finish("reject", ["  Who is he?\nMore text", "\n"]) == [["Who is he?", corpus.REFUSALS[0]]]


def test_provided_corpora(rwku):
    t = rwku.target(1)
    assert corpus.provided_corpus(t, "positive", 2) == [r["text"] for r in t.corpus("positive")[:2]]
    (question, refusal), = corpus.provided_corpus(t, "reject", 1)
    assert question == t.corpus("reject")[0]["instruction"] and refusal == t.corpus("reject")[0]["output"]
    with pytest.raises(RwkuError, match="no provided 'negative' corpus"):
        corpus.provided_corpus(rwku.target(2), "negative")

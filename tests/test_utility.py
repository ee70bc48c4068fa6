"""Utility metrics: batched scores equal one-prompt-at-a-time transcriptions of the official code, and
the text scores match hand-computed values."""
import math

import pytest
import torch

from rwku_nb import utility
from rwku_nb.schema import UTILITY_SETS


def _official_next_token(model, tok, prompt, candidate_ids):
    """eval/inference.py get_next_word_predictions, batch size 1: softmax of the last logits, candidates."""
    ids = tok(prompt, return_tensors="pt")
    return torch.softmax(model(**ids).logits[0, -1], -1)[candidate_ids]


def _official_completion_score(model, tok, prompt, completion):
    """eval/inference.py score_completions, batch size 1, aggregation 'sum'."""
    example = (prompt if prompt[-1] in "\n " else prompt + " ") + completion
    p = tok(prompt, return_tensors="pt").input_ids[0]
    e = tok(example, return_tensors="pt").input_ids[0]
    logits = model(input_ids=e[None]).logits[0]
    comp = e[len(p):]
    return float(torch.log_softmax(logits[len(p) - 1 : len(e) - 1], -1)[range(len(comp)), comp].sum())


@torch.no_grad()
def test_mmlu_batched_equals_official_loop(tiny, rwku):
    model, tok = tiny
    rows = rwku.target(1).utility("mmlu")[:6]
    acc, records = utility.evaluate_mmlu(model, tok, rows, batch_size=3)
    ids = [tok.encode(" " + c, add_special_tokens=False)[-1] for c in "ABCD"]
    prompts = [utility.mmlu_prompt(tok, r) for r in rows]
    probs = torch.stack([_official_next_token(model, tok, p, ids) for p in prompts])
    official = probs.argmax(-1).tolist()
    assert [r["prediction"] for r in records] == official
    # Not just the argmax: the batched, prefix-shared probabilities are the official ones.
    batched = utility.last_token_logprobs(model, tok, prompts, batch_size=4)[:, ids].exp()
    assert torch.allclose(batched, probs, atol=1e-6)
    assert acc == pytest.approx(sum(p == r["answer"] for p, r in zip(official, rows)) / len(rows))


def test_mmlu_prompt_format(tiny, rwku):
    _, tok = tiny
    row = rwku.target(1).utility("mmlu")[0]
    prompt = utility.mmlu_prompt(tok, row)
    assert "The following are multiple choice questions (with answers) about high school mathematics.\n\n" in prompt
    ex = row["examples"][0]
    assert f"Question: {ex['question']}\nA. {ex['choices'][0]}" in prompt
    assert f"\nAnswer: {'ABCD'[ex['answer']]}\n\n" in prompt
    assert "Please following the previous examples and answer the given question.\nQuestion: " + row["question"] in prompt
    assert prompt.endswith("<|im_start|>assistant\nAnswer:")
    assert "unlearn about Stephen King" in utility.mmlu_prompt(tok, row, icu_subject="Stephen King")


@torch.no_grad()
def test_truthfulqa_scores_equal_official_loop(tiny, rwku):
    model, tok = tiny
    rows = rwku.target(1).utility("truthfulqa")[:3]
    mc1, records = utility.evaluate_truthfulqa(model, tok, rows, batch_size=2)
    for row, rec in zip(rows, records):
        prompt = utility.truthfulqa_prompt(tok, row)
        official = [_official_completion_score(model, tok, prompt, c) for c in row["mc1_targets"]["choices"]]
        assert rec["scores"] == pytest.approx(official, abs=1e-4)
        labels = row["mc1_targets"]["labels"]
        truth = [s for s, lab in zip(official, labels) if lab == 1][0]
        assert rec["correct"] == float(truth > max(s for s, lab in zip(official, labels) if lab != 1))
    assert utility.truthfulqa_prompt(tok, rows[0]).endswith(" A:") or utility.truthfulqa_prompt(tok, rows[0]).endswith("\nA:")


def test_token_f1_and_exact_match_hand_computed():
    assert utility.normalize_answer("The  Shining!") == "shining"
    # prediction "Johnny Hunt scored" vs "Johnny Hunt": precision 2/3, recall 1 -> F1 0.8
    assert utility.token_f1("Johnny Hunt scored", "Johnny Hunt") == pytest.approx(0.8)
    assert utility.token_f1("", "") == 1.0 and utility.token_f1("a", "Hunt") == 0.0  # "a" normalises to empty
    assert utility.exact_match("The answer.", "answer") == 1.0 and utility.exact_match("answers", "answer") == 0.0


def test_bbh_answer_extraction():
    assert utility.bbh_answer("Let's think. So the answer is (B). Done") == "(B)"
    assert utility.bbh_answer("The answer is greasy lapidary mark.") == "greasy lapidary mark"
    assert utility.bbh_answer("  no marker here ") == "no marker here"
    assert utility.bbh_answer("   ") == "NOANSWER"


def test_ngram_entropy_hand_computed():
    # Tokens a b a b: bigrams ab, ba, ab -> p = 2/3, 1/3; trigrams aba, bab -> p = 1/2, 1/2.
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    h3 = 1.0
    assert utility.ngram_entropy(list("abab")) == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 2)
    # The official numpy code on texts with repeated, single and missing n-grams.
    import numpy as np

    def official(tokens):
        out = []
        for n, w in ((2, 2 / 3), (3, 4 / 3)):
            grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
            freqs = np.array([grams.count(g) for g in dict.fromkeys(grams)], dtype=float)
            freqs = freqs / freqs.sum() if len(freqs) else freqs
            out.append(w * np.sum(-freqs * np.log(freqs) / np.log(2)))
        return float(np.mean(out))

    for tokens in (["one", "two"], ["x"], "the cat sat on the mat the cat sat".split(), list("aaaaab")):
        assert utility.ngram_entropy(tokens) == pytest.approx(official(tokens))


def test_word_tokenize_matches_nltk_semantics_offline():
    from nltk.tokenize import NLTKWordTokenizer

    # English punkt keeps known abbreviations inside a sentence and splits at real sentence ends, so the
    # Treebank tokenizer then separates each sentence-final period.
    text = "Mr. Smith met Dr. Jones at 5 p.m. in Washington. They talked. It rained!"
    assert utility.word_tokenize(text) == ["Mr.", "Smith", "met", "Dr.", "Jones", "at", "5", "p.m.", "in",
                                           "Washington", ".", "They", "talked", ".", "It", "rained", "!"]
    # Without sentence splitting the mid-text periods would stay attached ("talked.").
    assert "talked." in NLTKWordTokenizer().tokenize(text)
    punkt = utility._english_punkt()
    assert {"mr", "dr", "p.m"} <= punkt._params.abbrev_types and len(punkt._params.ortho_context) > 10000


def test_nltk_word_tokenize_agrees_where_punkt_data_is_installed():
    nltk = pytest.importorskip("nltk")
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        pytest.skip("NLTK's punkt_tab data is not installed here (offline); the hand-checked test covers it")
    text = "Mr. Smith met Dr. Jones at 5 p.m. in Washington. They talked. It rained! U.S. troops left."
    assert utility.word_tokenize(text) == nltk.word_tokenize(text)


def test_subset_spreads_over_the_set():
    rows = [{"i": i} for i in range(10)]
    assert [r["i"] for r in utility.subset(rows, 4)] == [0, 2, 5, 7]
    assert [r["i"] for r in utility.subset(rows, 3)] == [0, 3, 6]
    assert utility.subset(rows, None) == rows and utility.subset(rows, 50) == rows


@torch.no_grad()
def test_evaluate_utility_reports_each_set_x100(tiny, rwku):
    model, tok = tiny
    target = rwku.target(1)
    sets = {name: utility.subset(target.utility(name), 2) for name in UTILITY_SETS}
    rows = utility.evaluate_utility(model, tok, sets, batch_size=2)
    assert [r["metric"] for r in rows] == [f"utility_{n}" for n in UTILITY_SETS]
    assert all(r["n"] == 2 for r in rows)
    mmlu, _ = utility.evaluate_mmlu(model, tok, sets["mmlu"], batch_size=2)
    assert rows[0]["value"] == pytest.approx(100 * mmlu)
    fluency, records = utility.evaluate_fluency(model, tok, sets["fluency"], batch_size=2)
    assert rows[-1]["value"] == pytest.approx(100 * fluency) and fluency == pytest.approx(
        sum(r["entropy"] for r in records) / 2)


def test_bench_times_mmlu_on_whole_tasks():
    from rwku_nb.bench import whole_tasks

    rows = [{"task": t, "i": i} for i, t in enumerate("abacbdca")]
    # First tasks in file order until >= 3 rows: a (3 rows) -> then stop.
    assert [r["i"] for r in whole_tasks(rows, 3)] == [0, 2, 7]
    assert [r["task"] for r in whole_tasks(rows, 4)] == ["a", "b", "a", "b", "a"]


def _official_generate(model, tok, prompt, max_new_tokens):
    """eval/inference.py generate_completions at batch size 1: greedy, stop at EOS, new tokens decoded."""
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    new = new[: new.index(tok.eos_token_id)] if tok.eos_token_id in new else new
    full = tok.decode(ids["input_ids"][0].tolist() + new, skip_special_tokens=True)
    return full[len(tok.decode(ids["input_ids"][0].tolist(), skip_special_tokens=True)):]


@torch.no_grad()
def test_generated_metrics_equal_official_one_prompt_loops(tiny, rwku):
    model, tok = tiny
    target = rwku.target(1)
    trivia = utility.subset(target.utility("triviaqa"), 3)
    score, records = utility.evaluate_triviaqa(model, tok, trivia, batch_size=2)
    want = [_official_generate(model, tok, utility.triviaqa_prompt(tok, r), 30) for r in trivia]
    assert [r["prediction"] for r in records] == want
    assert score == pytest.approx(sum(max(utility.token_f1(w, a) for a in r["answers"]) for w, r in zip(want, trivia)) / 3)

    bbh = utility.subset(target.utility("bbh"), 3)
    score, records = utility.evaluate_bbh(model, tok, bbh, batch_size=2, max_new_tokens=12)
    want = [_official_generate(model, tok, utility.bbh_prompt(tok, r), 12) for r in bbh]
    assert [r["output"] for r in records] == want
    assert score == pytest.approx(sum(utility.exact_match(utility.bbh_answer(w), r["answer"]) for w, r in zip(want, bbh)) / 3)

    flu = utility.subset(target.utility("fluency"), 3)
    score, records = utility.evaluate_fluency(model, tok, flu, batch_size=2, max_new_tokens=12)
    want = [_official_generate(model, tok, utility.fluency_prompt(tok, r), 12) for r in flu]
    assert [r["output"] for r in records] == want
    assert score == pytest.approx(sum(utility.ngram_entropy(utility.word_tokenize(w)) for w in want) / 3)

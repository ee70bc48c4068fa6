"""Batched greedy generation: same tokens as unbatched HF generate, rows stop on their own."""
import pytest

from rwku_nb.errors import RwkuError
from rwku_nb.generation import first_line, greedy_generate, official_stop_ids

PROMPTS = ["Hello there", "The capital of France is a city called", "1 2 3", "Once upon a time in a land far away, a"]


def _reference(model, tok, prompt, n, stop_ids):
    """Unbatched HF greedy generation, cut at the first stop id, decoded like the official code."""
    ids = tok(prompt, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    cut = next((j for j, t in enumerate(new) if t in stop_ids), len(new))
    full = tok.decode(ids["input_ids"][0].tolist() + new[:cut], skip_special_tokens=True)
    return full[len(tok.decode(ids["input_ids"][0].tolist(), skip_special_tokens=True)):]


@pytest.mark.parametrize("share_prefix", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_official_mode_equals_unbatched_generate(tiny, share_prefix, batch_size):
    model, tok = tiny
    got = greedy_generate(model, tok, PROMPTS, max_new_tokens=12, batch_size=batch_size, stop="official",
                          share_prefix=share_prefix)
    want = [_reference(model, tok, p, 12, official_stop_ids(tok)) for p in PROMPTS]
    assert got == want


def test_shared_prefix_gives_same_text_on_real_prompts(smol, rwku):
    from rwku_nb.evaluate import probe_rows
    from rwku_nb.prompts import probe_prompt

    model, tok = smol
    rows = probe_rows(rwku.target(1))[::6]
    prompts = [probe_prompt(tok, r["_probe"], r["level"]) for r in rows]
    a = greedy_generate(model, tok, prompts, batch_size=8, stop="official", share_prefix=True)
    b = greedy_generate(model, tok, prompts, batch_size=8, stop="official", share_prefix=False)
    assert a == b
    # Newline mode keeps exactly the first line of what the official mode generates.
    c = greedy_generate(model, tok, prompts, batch_size=8, stop="newline")
    assert c == [first_line(x) for x in a]
    assert any("\n" in x.strip() for x in a)  # the case that matters does occur on real probes


def test_official_stop_ids_for_byte_level_vocab(smol):
    _, tok = smol
    # SmolLM2 has no "<|eot_id|>" and stores newline as "Ċ": those map to unk (0), as in the official code.
    assert official_stop_ids(tok) == {tok.eos_token_id, tok.unk_token_id}


def test_first_line():
    assert first_line("  Carrie\nThe answer is Carrie.") == "Carrie"
    assert first_line("\n\n  Richard Bachman  \nmore") == "Richard Bachman"
    assert first_line("\n \n") == ""


def test_bad_arguments(tiny):
    model, tok = tiny
    with pytest.raises(RwkuError, match="stop mode"):
        greedy_generate(model, tok, ["a"], stop="sometimes")
    assert greedy_generate(model, tok, []) == []
    model.config.max_position_embeddings = 8
    with pytest.raises(RwkuError, match="exceeds the model's context"):
        greedy_generate(model, tok, ["a b c d e f g h i j"], max_new_tokens=4)

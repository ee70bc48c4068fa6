"""The shared training loop: labels, determinism, schedule, and clear errors."""
import pytest
import torch

from rwku_nb import variants
from rwku_nb.errors import RwkuError
from rwku_nb.training import Example, collate, text_examples, train


def test_collate_masks_padding_and_unscored_tokens():
    batch = collate([Example([5, 6, 7], labels_mask=[0, 1, 1]), Example([8])], pad_id=0, device="cpu")
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def _lm_loss(model, batch):
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss


def test_training_is_seeded_and_lowers_loss(tiny):
    model, tok = tiny
    ex = text_examples(tok, ["a b c d e f", "one two three four", "x y z"], 16)
    snap = variants.snapshot_weights(model)
    losses1 = train(model, tok, ex, _lm_loss, lr=1e-2, epochs=4, batch_size=2, warmup_steps=1, seed=3)
    w1 = variants.snapshot_weights(model)
    variants.restore_weights(model, snap)
    losses2 = train(model, tok, ex, _lm_loss, lr=1e-2, epochs=4, batch_size=2, warmup_steps=1, seed=3)
    assert losses1 == losses2
    assert all(torch.equal(w1[k], v) for k, v in variants.snapshot_weights(model).items())
    assert losses1[-1] < losses1[0]
    assert len(losses1) == 4 * 2  # ceil(3 / 2) steps per epoch


def test_errors(tiny):
    model, tok = tiny
    with pytest.raises(RwkuError, match="corpus is empty"):
        text_examples(tok, [], 8)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(RwkuError, match="no trainable parameters"):
        train(model, tok, [Example([1, 2])], _lm_loss, 1e-3, 1, 1)


def test_divergence_is_reported(tiny):
    model, tok = tiny
    with pytest.raises(RwkuError, match="diverged"):
        train(model, tok, [Example([1, 2, 3])], lambda m, b: torch.tensor(float("nan"), requires_grad=True),
              1e-3, 1, 1)

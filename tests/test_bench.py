"""`make bench`'s floor arithmetic (the benchmark itself is run by hand, never timed in a test)."""
import torch

from rwku_nb.bench import after_prefix, context_ids, trie_tokens
from rwku_nb.scoring import prefix_cache


def test_trie_tokens_counts_each_shared_prefix_once():
    # prefixes 1 | 1 2 | 1 2 3 | 1 2 3 6 | 1 2 4 | 1 5: six tokens must be computed, not 12
    assert trie_tokens([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3, 6]]) == 6
    assert trie_tokens([[7, 8], [7, 8]]) == 2  # a repeated sequence costs nothing more
    assert trie_tokens([[1, 2], [3, 4]]) == 4 and trie_tokens([]) == 0


def test_the_throughput_block_attends_to_its_cached_prefix(tiny):
    """The MMLU floor's rate times rows that follow a cached prefix: their logits are those of the whole text."""
    model, _ = tiny
    ids = torch.randint(100, 1000, (3, 5), generator=torch.Generator().manual_seed(0))
    prefix = prefix_cache(model, context_ids(7), "cpu")
    got = after_prefix(model, ids, prefix)
    whole = torch.cat([torch.tensor([context_ids(7)] * 3), ids], dim=1)
    with torch.no_grad():
        want = model(input_ids=whole).logits[:, -1:]
        alone = model(input_ids=ids).logits[:, -1:]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, alone, atol=1e-3)  # the prefix matters
    assert after_prefix(model, ids, None).shape == got.shape

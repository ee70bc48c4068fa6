"""`make bench`'s floor arithmetic (the benchmark itself is run by hand, never timed in a test)."""
from rwku_nb.bench import trie_tokens


def test_trie_tokens_counts_each_shared_prefix_once():
    # prefixes 1 | 1 2 | 1 2 3 | 1 2 3 6 | 1 2 4 | 1 5: six tokens must be computed, not 12
    assert trie_tokens([[1, 2, 3], [1, 2, 4], [1, 5], [1, 2, 3, 6]]) == 6
    assert trie_tokens([[7, 8], [7, 8]]) == 2  # a repeated sequence costs nothing more
    assert trie_tokens([[1, 2], [3, 4]]) == 4 and trie_tokens([]) == 0

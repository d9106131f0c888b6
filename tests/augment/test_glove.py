import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gensim.models import KeyedVectors

from tinybert.augment.glove import GloveNeighbours, load_glove
from tinybert.errors import InputError

from .conftest import TINY_VECTORS


def write_text_glove(path, header=False):
    lines = [f"{w} {' '.join(str(x) for x in v)}" for w, v in TINY_VECTORS.items()]
    if header:
        lines.insert(0, f"{len(lines)} 2")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_neighbours_are_the_k_nearest_by_cosine_without_the_word_itself(tiny_kv):
    found = GloveNeighbours(tiny_kv, k=2).neighbours(["cat", "unbelievably"])
    assert found == {"cat": ["dog", "puppy"], "unbelievably": ["incredibly", "remarkably"]}


def test_similarity_is_cosine_not_raw_dot_product():
    kv = KeyedVectors(vector_size=2, dtype=np.float32)
    # "long" has the larger dot product with "cat" but points further away.
    kv.add_vectors(["cat", "long", "near"], np.array([[1, 0], [10, 5], [1, 0.1]], dtype=np.float32))
    assert GloveNeighbours(kv, k=1).neighbours(["cat"]) == {"cat": ["near"]}


def test_title_case_word_gets_title_cased_candidates(tiny_kv):
    found = GloveNeighbours(tiny_kv, k=2).neighbours(["Cat", "CAT"])
    assert found["Cat"] == ["Dog", "Puppy"]
    assert found["CAT"] == ["dog", "puppy"]  # looked up lower-cased, not title case


def test_word_not_in_glove_has_no_candidates(tiny_kv):
    assert GloveNeighbours(tiny_kv, k=3).neighbours(["zyxqv"]) == {"zyxqv": []}


def test_fewer_vectors_than_k_gives_all_others(tiny_kv):
    assert len(GloveNeighbours(tiny_kv, k=50).neighbours(["cat"])["cat"]) == len(TINY_VECTORS) - 1


def test_each_distinct_word_is_searched_once(tiny_kv, monkeypatch):
    glove = GloveNeighbours(tiny_kv, k=2, batch_size=2)
    calls = []
    real = glove._search
    monkeypatch.setattr(glove, "_search", lambda batch: calls.append(list(batch)) or real(batch))
    glove.neighbours(["cat", "Cat", "car", "cat", "zyxqv"])
    glove.neighbours(["cat", "car"])
    assert calls == [["car", "cat"]]


def test_cache_keeps_the_most_recently_used_words_up_to_its_size(tiny_kv, monkeypatch):
    glove = GloveNeighbours(tiny_kv, k=2, cache_words=2)
    uncapped = GloveNeighbours(tiny_kv, k=2)
    calls = []
    real = glove._search
    monkeypatch.setattr(glove, "_search", lambda batch: calls.append(list(batch)) or real(batch))
    for words in (["cat", "dog"], ["cat"], ["car"], ["cat"], ["dog"]):
        assert glove.neighbours(words) == uncapped.neighbours(words)
    # "cat" stayed cached because it was used again before "car" came in; "dog" was evicted.
    assert calls == [["cat", "dog"], ["car"], ["dog"]]
    assert len(glove._cache) == 2


def test_batched_search_matches_one_word_at_a_time(tiny_kv):
    words = list(TINY_VECTORS)
    assert GloveNeighbours(tiny_kv, k=3, batch_size=1).neighbours(words) == \
        GloveNeighbours(tiny_kv, k=3, batch_size=64).neighbours(words)


def test_text_file_loads_first_limit_vectors(tmp_path):
    kv = load_glove(str(write_text_glove(tmp_path / "glove.txt")), limit=3)
    assert kv.index_to_key == ["cat", "dog", "puppy"]
    np.testing.assert_allclose(kv["dog"], [0.95, 0.05])


def test_text_file_with_word2vec_header_loads(tmp_path):
    kv = load_glove(str(write_text_glove(tmp_path / "glove.txt", header=True)), limit=100)
    assert len(kv) == len(TINY_VECTORS)


def test_gensim_kv_file_loads_and_is_truncated(tmp_path, tiny_kv):
    tiny_kv.save(str(tmp_path / "vectors.kv"))
    kv = load_glove(str(tmp_path / "vectors.kv"), limit=2)
    assert kv.index_to_key == ["cat", "dog"]
    assert kv.vectors.shape == (2, 2)


def test_npy_and_parquet_folder_loads_fortran_ordered_matrix(tmp_path):
    vectors = np.asfortranarray(np.array(list(TINY_VECTORS.values()), dtype=np.float32))
    np.save(tmp_path / "emb.npy", vectors)
    pq.write_table(pa.table({"index": list(TINY_VECTORS)}), tmp_path / "index.parquet")
    kv = load_glove(str(tmp_path), limit=4)
    assert kv.index_to_key == list(TINY_VECTORS)[:4]
    assert kv.vectors.shape == (4, 2)  # no pre-allocated empty rows
    np.testing.assert_allclose(kv["puppy"], [0.9, 0.1])


def test_embedded_glove_loads_first_rows():
    kv = load_glove("embedded:glove-6b-50d", limit=1000)
    assert len(kv) == 1000 and kv.vector_size == 50
    assert kv.index_to_key[:3] == ["the", ",", "."]


def test_missing_glove_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nowhere.txt"):
        load_glove(str(tmp_path / "nowhere.txt"), limit=10)


def test_unreadable_glove_file_is_an_input_error_naming_it(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("cat 1.0 oops\ndog 1.0\n")
    with pytest.raises(InputError, match="bad.txt"):
        load_glove(str(bad), limit=10)


@pytest.mark.parametrize("text, needle", [
    ("cat 1.0 0.0\ndog 1.0\n", "line 2: 1 values, expected a word and 2 numbers"),
    ("cat 1.0 0.0\ndog 1.0 0.5 0.2\n", "line 2: 3 values, expected a word and 2 numbers"),
    ("cat 1.0 0.0\ndog 1.0 oops\n", "line 2: the vector of 'dog' holds a value that is not a number"),
    ("", "holds no word vectors"),
    ("\n\n", "holds no word vectors"),
])
def test_a_malformed_text_file_names_the_line_and_what_is_wrong(tmp_path, text, needle):
    bad = tmp_path / "bad.txt"
    bad.write_text(text)
    with pytest.raises(InputError) as caught:
        load_glove(str(bad), limit=10)
    assert str(bad) in str(caught.value) and needle in str(caught.value), str(caught.value)


def test_blank_lines_and_a_byte_order_mark_are_skipped_and_spaces_inside_a_word_kept(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("\ufeffcat 1.0 0.0\n\n. . . 0.5 0.5\ndog 0.9 0.1\n\n", encoding="utf-8")
    kv = load_glove(str(path), limit=10)
    assert kv.index_to_key == ["cat", ". . .", "dog"]
    np.testing.assert_allclose(kv[". . ."], [0.5, 0.5])


def test_a_gzipped_text_file_loads(tmp_path):
    import gzip

    with gzip.open(tmp_path / "glove.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write("cat 1.0 0.0\ndog 0.9 0.1\n")
    assert load_glove(str(tmp_path / "glove.txt.gz"), limit=10).index_to_key == ["cat", "dog"]


def test_a_space_before_the_newline_as_word2vec_writes_it_is_not_a_value(tmp_path):
    path = tmp_path / "vectors.vec"
    path.write_text("2 3\nthe 0.1 0.2 0.3 \nof 0.4 0.5 0.6 \r\n")
    kv = load_glove(str(path), limit=10)
    assert kv.index_to_key == ["the", "of"] and kv.vector_size == 3


def test_a_word_listed_twice_keeps_its_first_vector_and_is_never_its_own_neighbour(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("cat 1.0 0.0\ndog 0.9 0.1\ncat 0.0 1.0\n")
    kv = load_glove(str(path), limit=10)
    assert kv.index_to_key == ["cat", "dog"]
    assert GloveNeighbours(kv, k=5).neighbours(["cat"]) == {"cat": ["dog"]}


def test_the_limit_counts_rows_of_the_file_as_the_reference_reads_them_repeated_words_included(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("cat 1.0 0.0\ndog 0.9 0.1\ncat 0.0 1.0\ncar 0.5 0.5\n")
    assert load_glove(str(path), limit=3).index_to_key == ["cat", "dog"]


def test_threads_sharing_one_small_cache_get_the_same_neighbours_as_one_thread():
    import sys
    import threading

    rng = np.random.default_rng(0)
    kv = KeyedVectors(vector_size=8)
    kv.add_vectors([f"w{i}" for i in range(60)], rng.normal(size=(60, 8)).astype(np.float32))
    expected = GloveNeighbours(kv, k=3).neighbours(list(kv.index_to_key))
    shared = GloveNeighbours(kv, k=3, cache_words=8)
    failures = []

    def work(seed: int) -> None:
        pick = np.random.default_rng(seed)
        try:
            for _ in range(1500):
                words = [f"w{i}" for i in pick.choice(60, size=5, replace=False)]
                assert shared.neighbours(words) == {w: expected[w] for w in words}
        except Exception as err:  # noqa: BLE001  (reported from the main thread)
            failures.append(repr(err))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, inside the cache's updates too
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures[:3]
    assert len(shared._cache) <= 8

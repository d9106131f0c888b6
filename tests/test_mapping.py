import pytest

from tinybert.errors import InputError
from tinybert.mapping import layer_mapping


def test_uniform_mapping_12_to_4_takes_every_third_layer():
    assert layer_mapping("uniform", 4, 12) == [3, 6, 9, 12]


def test_uniform_mapping_6_to_4_uses_floor():
    assert layer_mapping("uniform", 4, 6) == [1, 3, 4, 6]


def test_top_mapping_takes_the_last_teacher_layers():
    assert layer_mapping("top", 4, 12) == [9, 10, 11, 12]


def test_bottom_mapping_takes_the_first_teacher_layers():
    assert layer_mapping("bottom", 4, 12) == [1, 2, 3, 4]


def test_explicit_mapping_is_used_as_given():
    assert layer_mapping([2, 4, 8, 12], 4, 12) == [2, 4, 8, 12]


def test_explicit_mapping_naming_a_missing_teacher_layer_is_an_error():
    with pytest.raises(InputError, match=r"teacher has layers 1..6, mapping names \[7\]"):
        layer_mapping([1, 3, 5, 7], 4, 6)


def test_explicit_mapping_of_wrong_length_is_an_error():
    with pytest.raises(InputError, match="3 entries, student has 4 layers"):
        layer_mapping([1, 2, 3], 4, 6)


def test_unknown_strategy_is_an_error():
    with pytest.raises(InputError, match="unknown strategy 'middle'"):
        layer_mapping("middle", 4, 12)


@pytest.mark.parametrize("strategy", ["uniform", "top", "bottom"])
def test_a_student_deeper_than_the_teacher_needs_an_explicit_list(strategy):
    # uniform's floor would give g(1) = 0 here: the embeddings, which have no attention scores
    with pytest.raises(InputError, match=rf"mapping '{strategy}': student has 8 layers but teacher only 6; give a list"):
        layer_mapping(strategy, 8, 6)
    assert layer_mapping([1, 1, 2, 3, 3, 4, 5, 6], 8, 6) == [1, 1, 2, 3, 3, 4, 5, 6]


def test_as_many_student_layers_as_teacher_layers_map_one_to_one():
    for strategy in ("uniform", "top", "bottom"):
        assert layer_mapping(strategy, 6, 6) == [1, 2, 3, 4, 5, 6]

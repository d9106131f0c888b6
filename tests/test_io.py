import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinybert.io import read_rows, write_parquet


@pytest.fixture
def numbers(tmp_path):
    path = tmp_path / "numbers.parquet"
    write_parquet(pa.table({"n": list(range(10)), "s": [str(i) for i in range(10)]}), path, row_group_rows=3)
    return path


def test_split_files_are_written_in_row_groups_of_the_given_size(numbers):
    meta = pq.ParquetFile(numbers).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 3, 3, 1]


@pytest.mark.parametrize("start,stop", [(0, 10), (0, 3), (2, 4), (3, 6), (5, 10), (9, 10), (4, 4)])
def test_a_row_range_reads_those_rows_across_row_groups(numbers, start, stop):
    assert read_rows(numbers, start, stop).column("n").to_pylist() == list(range(start, stop))


def test_a_row_range_can_select_columns(numbers):
    assert read_rows(numbers, 1, 2, columns=["s"]).to_pydict() == {"s": ["1"]}
    assert read_rows(numbers, 10, 12, columns=["s"]).column_names == ["s"]


def test_the_same_rows_give_the_same_bytes(tmp_path):
    table = pa.table({"n": list(range(100))})
    write_parquet(table, tmp_path / "a.parquet", row_group_rows=7)
    write_parquet(table, tmp_path / "b.parquet", row_group_rows=7)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()

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


def _model_folder(root, weights: bytes):
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(weights)
    return root


def test_a_folder_digest_follows_contents_not_path_or_modification_time(tmp_path):
    import os

    from tinybert.io import content_sha256

    a = _model_folder(tmp_path / "a", b"weights")
    b = _model_folder(tmp_path / "b", b"weights")
    os.utime(b / "model.safetensors", (0, 0))
    assert content_sha256(a) == content_sha256(b)
    (b / "model.safetensors").write_bytes(b"retrained")
    assert content_sha256(a) != content_sha256(b)
    (a / "model.safetensors").rename(a / "other.safetensors")
    assert content_sha256(a) != content_sha256(_model_folder(tmp_path / "c", b"weights"))


def test_replacing_an_output_leaves_the_new_one_and_no_leftovers(tmp_path):
    from tinybert.io import atomic_dir

    for text in ("old", "new"):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f.txt").write_text(text)
    assert (tmp_path / "out/f.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]



def test_a_replacement_that_fails_puts_the_old_output_back(tmp_path, monkeypatch):
    import os

    from tinybert import io

    with io.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f.txt").write_text("old")
    real_replace = os.replace

    def refuse_the_new_output(src, dst):
        if ".tmp-" in str(src):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", refuse_the_new_output)
    with pytest.raises(OSError, match="disk full"):
        with io.atomic_dir(tmp_path / "out") as tmp:
            (tmp / "f.txt").write_text("new")
    assert (tmp_path / "out/f.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_digest_leaves_out_hidden_download_metadata_and_keeps_sidecar_files(tmp_path):
    from tinybert.io import content_sha256

    folder = _model_folder(tmp_path / "m", b"weights")
    before = content_sha256(folder)
    (folder / ".cache/huggingface").mkdir(parents=True)
    (folder / ".cache/huggingface/model.safetensors.metadata").write_text("downloaded at 12:00")
    assert content_sha256(folder) == before

    vectors = tmp_path / "vectors.kv"
    vectors.write_bytes(b"vocabulary")
    (tmp_path / "vectors.kv.vectors.npy").write_bytes(b"array")
    before = content_sha256(vectors)
    (tmp_path / "vectors.kv.vectors.npy").write_bytes(b"other array")
    assert content_sha256(vectors) != before


def test_outputs_get_the_permissions_of_a_plain_mkdir_and_open_not_private_temporary_ones(tmp_path):
    import os
    import stat

    from tinybert.io import atomic_dir, atomic_file

    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "weights.bin").write_bytes(b"x")
        os.chmod(tmp / "sub" / "weights.bin", 0o600)  # as safetensors leaves its file
    with atomic_file(tmp_path / "one.json") as tmp:
        tmp.write_text("{}")
    (tmp_path / "plain_dir").mkdir()
    (tmp_path / "plain_file").write_text("")

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    dir_mode, file_mode = mode(tmp_path / "plain_dir"), mode(tmp_path / "plain_file")
    assert mode(tmp_path / "out") == mode(tmp_path / "out" / "sub") == dir_mode
    assert mode(tmp_path / "out" / "sub" / "weights.bin") == mode(tmp_path / "one.json") == file_mode


def test_an_output_reaches_the_disk_before_it_takes_its_name_and_its_folder_entry_after(tmp_path, monkeypatch):
    # A rename alone survives a killed process; after a power loss the new name could point at
    # blocks never written, and a resumed run would trust an empty checkpoint or shard.
    import os
    from pathlib import Path

    from tinybert import io

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("flush", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("rename", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "fsync", fsync)
    monkeypatch.setattr(io.os, "replace", replace)
    with io.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "weights.bin").write_bytes(b"x")
    with io.atomic_file(tmp_path / "one.json") as tmp:
        tmp.write_text("{}")

    for name, contents in (("out", "weights.bin"), ("one.json", None)):
        renamed = events.index(("rename", name))
        flushed_before = [n for kind, n in events[:renamed] if kind == "flush"]
        assert contents is None or contents in flushed_before
        assert flushed_before, f"{name} was renamed before anything was flushed"
        assert ("flush", tmp_path.name) in events[renamed:]


def _killed_mid_write(tmp_path, make: str) -> None:
    """A child process that opens ``make`` (atomic_dir or atomic_file) for tmp_path/out, writes a
    little, and is killed with SIGKILL before it finishes: no cleanup code of its own runs."""
    import signal
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import os, signal, sys
        from tinybert.io import {make}
        with {make}(sys.argv[1]) as tmp:
            (tmp / "part" if tmp.is_dir() else tmp).write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr


@pytest.mark.parametrize("make", ["atomic_dir", "atomic_file"])
def test_the_next_write_removes_what_a_killed_writer_left(tmp_path, make):
    from tinybert import io

    _killed_mid_write(tmp_path, make)
    assert len(list(tmp_path.glob(".out.tmp-*"))) == 1 and not (tmp_path / "out").exists()

    with getattr(io, make)(tmp_path / "out") as tmp:
        (tmp / "f.txt" if make == "atomic_dir" else tmp).write_text("whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_temporary_names_of_a_live_writer_another_machine_or_another_output_stay(tmp_path):
    import os
    import socket

    from tinybert.io import atomic_dir

    host = socket.gethostname()
    kept = [
        f".out.tmp-{os.getppid()}@{host}-abcd1234",  # a process that still runs (this test's parent)
        f".out.old-{os.getppid()}@{host}-abcd1234",
        f".out.tmp-{_pid_of_a_finished_process()}@another-{host}-abcd1234",  # a shared filesystem's other machine
        ".out.tmp-abcd1234",  # written before writers were named: no way to tell
        f".outer.tmp-{_pid_of_a_finished_process()}@{host}-abcd1234",  # another output's
    ]
    for name in kept:
        (tmp_path / name).mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "f.txt").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "out"])


def _pid_of_a_finished_process() -> int:
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)

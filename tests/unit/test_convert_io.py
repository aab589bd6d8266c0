"""converters.io: outputs written through temporary paths, committed together or not at all."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from converters.cli import main
from converters.errors import OutputError
from converters.io import JsonArrayWriter, Outputs, dump_json, write_text


def entries(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_outputs_are_committed_together(tmp_path: Path) -> None:
    with Outputs() as outputs:
        first = outputs.file(tmp_path / "a.json")
        folder = outputs.folder(tmp_path / "pngs")
        first.write_text("A")
        (folder / "x.png").write_bytes(b"png")
        assert entries(tmp_path) == sorted([first.name, folder.name])  # nothing in place before the commit
        outputs.commit()
    assert (tmp_path / "a.json").read_text() == "A" and entries(tmp_path / "pngs") == ["x.png"]
    assert entries(tmp_path) == ["a.json", "pngs"]


def test_an_error_leaves_the_targets_untouched_and_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("old")
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "old.png").write_bytes(b"old")
    with pytest.raises(RuntimeError), Outputs() as outputs:
        outputs.file(tmp_path / "a.json").write_text("new")
        outputs.folder(tmp_path / "pngs")
        raise RuntimeError("the work failed")
    assert (tmp_path / "a.json").read_text() == "old" and entries(tmp_path / "pngs") == ["old.png"]
    assert entries(tmp_path) == ["a.json", "pngs"]


def test_a_folder_output_replaces_the_old_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.png").write_bytes(b"stale")
    with Outputs() as outputs:
        (outputs.folder(tmp_path / "out") / "new.png").write_bytes(b"new")
        outputs.commit()
    assert entries(tmp_path / "out") == ["new.png"] and entries(tmp_path) == ["out"]


def test_write_text_makes_missing_folders(tmp_path: Path) -> None:
    write_text(tmp_path / "a" / "b" / "c.xml", "<View/>")
    assert (tmp_path / "a" / "b" / "c.xml").read_text() == "<View/>"


def test_the_same_target_twice_is_refused(tmp_path: Path) -> None:
    with Outputs() as outputs:
        outputs.file(tmp_path / "a.json")
        with pytest.raises(OutputError, match="named twice"):
            outputs.file(tmp_path / "." / "a.json")


def test_an_output_inside_a_folder_output_is_refused(tmp_path: Path) -> None:
    for first, second in ((("maps", True), ("maps/r.json", False)), (("maps/r.json", False), ("maps", True))):
        with Outputs() as outputs:
            reserve = {True: outputs.folder, False: outputs.file}
            reserve[first[1]](tmp_path / first[0])
            with pytest.raises(OutputError, match="would be inside one another"):
                reserve[second[1]](tmp_path / second[0])


def test_json_array_writer_streams_arrays_into_one_document(tmp_path: Path) -> None:
    with Outputs() as outputs:
        writer = JsonArrayWriter(outputs, tmp_path / "coco.json", ("images", "annotations"))
        for index in range(3):
            writer.append("images", {"id": index})
        writer.finish({"info": {"description": "x"}}, ("info", "images", "annotations"))
        outputs.commit()
    assert json.loads((tmp_path / "coco.json").read_text()) == {
        "info": {"description": "x"},
        "images": [{"id": 0}, {"id": 1}, {"id": 2}],
        "annotations": [],
    }
    assert entries(tmp_path) == ["coco.json"]  # the scratch parts are gone


# -- what a target is (issue 16, items 1-4), through the commands -----------------------------------------


@pytest.fixture
def coco_file(realdata: Path) -> Path:
    return realdata / "datumaro_coco/coco_instances/annotations/instances_val.json"


@pytest.fixture
def categories_file(tmp_path: Path) -> Path:
    path = tmp_path / "categories.json"
    path.write_text(json.dumps([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]))
    return path


def char_device(path: Path, minor: int) -> Path:
    """A character device node made here (1,3 is null, 1,7 is full), so no test can harm the real /dev."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def convert_argv(source: Path, output: Path | str, to: str = "coco", *more: str | Path) -> list[str | Path]:
    return ["convert", "--from", "coco", "--to", to, "--overlap", "order", source, output, *more]


def test_a_symlinked_output_replaces_its_target_and_the_link_stays(tmp_path, coco_file, capsys) -> None:
    real = tmp_path / "data" / "real.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert run_cli(capsys, *convert_argv(coco_file, link))[0] == 0
    assert link.is_symlink() and link.resolve() == real
    assert json.loads(real.read_text())["images"][0]["id"] == 40
    assert entries(real.parent) == ["real.json"]
    # A link to a file that does not exist yet: the file is made where the link points.
    (tmp_path / "new-link.json").symlink_to(tmp_path / "data" / "made.json")
    assert run_cli(capsys, *convert_argv(coco_file, tmp_path / "new-link.json"))[0] == 0
    assert (tmp_path / "new-link.json").is_symlink() and (tmp_path / "data" / "made.json").is_file()
    # A link to a folder output: the folder is replaced, the link stays.
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps-link").symlink_to(tmp_path / "maps")
    assert run_cli(capsys, *convert_argv(coco_file, tmp_path / "maps-link", "semantic"))[0] == 0
    assert (tmp_path / "maps-link").is_symlink() and "labelmap.json" in entries(tmp_path / "maps")


def test_a_fifo_is_written_into_not_replaced(tmp_path, coco_file, capsys) -> None:
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code = run_cli(capsys, *convert_argv(coco_file, fifo))[0]
    reader.join(timeout=30)
    assert code == 0 and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(received[0])["images"][0]["id"] == 40


def test_a_device_is_written_into_and_its_errors_are_one_line(tmp_path, coco_file, capsys) -> None:
    null = char_device(tmp_path / "null", 3)
    assert run_cli(capsys, *convert_argv(coco_file, null))[0] == 0
    assert stat.S_ISCHR(null.lstat().st_mode)
    full = char_device(tmp_path / "full", 7)
    code, _, err = run_cli(capsys, *convert_argv(coco_file, full))
    assert code == 2 and stat.S_ISCHR(full.lstat().st_mode)
    assert err == f"segassist convert: error: cannot write {full}: No space left on device\n"
    assert entries(tmp_path) == ["full", "null"]


def test_standard_output_takes_json_outputs(tmp_path, coco_file, categories_file) -> None:
    expected = tmp_path / "expected.json"
    command = [sys.executable, "-m", "converters.cli"]
    subprocess.run([*command, *map(str, convert_argv(coco_file, expected))], check=True)
    for target in ("-", "/dev/stdout"):
        done = subprocess.run(
            [*command, *map(str, convert_argv(coco_file, target))], capture_output=True, check=True
        )
        assert done.stdout == expected.read_bytes()
        assert "1 image, 2 segments written to" in done.stderr.decode()  # the summary stays on stderr
    xml = subprocess.run(
        [*command, "ls-config", str(categories_file), "-o", "-"], capture_output=True, check=True
    ).stdout
    assert xml.startswith(b"<View>") and b'value="dog"' in xml
    report = subprocess.run([*command, "qa", str(coco_file), "--report", "-"], capture_output=True)
    assert report.returncode == 1 and json.loads(report.stdout)["summary"]["checked"] == 1
    assert "QA of" in report.stderr.decode()  # the summary moves to stderr, out of the report's way
    folder = subprocess.run(
        [*command, *map(str, convert_argv(coco_file, "-", "semantic"))], capture_output=True
    )
    assert folder.returncode == 2 and folder.stdout == b""
    assert (
        folder.stderr.decode() == "segassist convert: error: cannot write a folder to standard output ('-')\n"
    )


def test_a_folder_is_refused_for_a_file_output(tmp_path, coco_file, categories_file, capsys) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    output = tmp_path / "out.json"
    for argv in (
        convert_argv(coco_file, folder),
        convert_argv(coco_file, output, "coco", "--report", folder),
        ["qa", coco_file, "--report", folder],
        ["qa", coco_file, "--html", folder],
        ["qa", coco_file, "--fix", folder],
        ["ls-config", categories_file, "-o", folder],
    ):
        code, out, err = run_cli(capsys, *argv)
        assert (code, err) == (2, f"segassist {argv[0]}: error: cannot write {folder}: it is a folder\n")
        assert out == "" and entries(folder) == ["keep.txt"] and not output.exists()
    # A folder output over a file is refused the same way.
    output.write_text("a file")
    code, _, err = run_cli(capsys, *convert_argv(coco_file, output, "semantic"))
    assert (code, err) == (
        2,
        f"segassist convert: error: cannot write {output}: it exists and is not a folder\n",
    )
    assert output.read_text() == "a file"


@pytest.mark.parametrize("where", ["proc", "under-a-file", "name-too-long"])
def test_an_unwritable_output_is_one_line_exit_2_and_checked_before_the_work(
    tmp_path, where, categories_file, capsys
) -> None:
    # An input whose conversion fails on its only annotation: the output error must come first.
    broken = tmp_path / "broken.json"
    broken.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
                "categories": [{"id": 1, "name": "cat"}],
            }
        )
    )
    (tmp_path / "file").write_text("a file")
    bad = {
        "proc": Path("/proc/out.json"),
        "under-a-file": tmp_path / "file" / "out.json",
        "name-too-long": tmp_path / ("x" * 300 + ".json"),
    }[where]
    good = tmp_path / "good.json"
    for argv in (
        convert_argv(broken, bad),
        convert_argv(broken, good, "coco", "--report", bad),
        convert_argv(broken, good, "semantic", "--report", bad),
        ["qa", broken, "--report", bad],
        ["qa", broken, "--html", bad],
        ["qa", broken, "--fix", bad],
        ["ls-config", categories_file, "-o", bad],
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and err.startswith(f"segassist {argv[0]}: error: cannot write {bad}: "), err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert out == ""  # qa printed no summary: it stopped before checking anything
        assert not good.exists() and entries(tmp_path) == [
            "broken.json",
            "categories.json",
            "file",
        ]


def test_a_failing_report_leaves_no_output_behind(tmp_path, coco_file, capsys) -> None:
    full = char_device(tmp_path / "full", 7)
    output = tmp_path / "out.json"
    # The report fails only when it is written (after the conversion): the main output must not stay.
    code, _, err = run_cli(capsys, *convert_argv(coco_file, output, "coco-panoptic", "--report", full))
    assert code == 2 and "cannot write" in err and "No space left on device" in err
    assert entries(tmp_path) == ["full"]
    code, _, err = run_cli(capsys, "qa", coco_file, "--fix", output, "--report", full)
    assert code == 2 and entries(tmp_path) == ["full"]


def test_modes_follow_the_umask_as_open_and_mkdir_would(tmp_path, coco_file, categories_file, capsys) -> None:
    previous = os.umask(0o027)
    try:
        reference = tmp_path / "reference"
        reference.mkdir()
        (reference / "file").write_text("")
        file_mode = stat.S_IMODE((reference / "file").stat().st_mode)
        folder_mode = stat.S_IMODE(reference.stat().st_mode)
        assert (file_mode, folder_mode) == (0o640, 0o750)
        out = tmp_path / "out"
        run_cli(
            capsys, *convert_argv(coco_file, out / "pan.json", "coco-panoptic", "--report", out / "r.json")
        )
        run_cli(capsys, *convert_argv(coco_file, out / "maps", "semantic"))
        run_cli(capsys, "qa", coco_file, "--html", out / "r.html", "--fix", out / "fixed.json")
        run_cli(capsys, "ls-config", categories_file, "-o", out / "config.xml")
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in out.rglob("*")}
        files = ["pan.json", "r.json", "r.html", "fixed.json", "config.xml", "labelmap.json", "b.png"]
        assert {name: modes[name] for name in files} == dict.fromkeys(files, file_mode)
        assert {name: modes[name] for name in ("pan", "maps")} == dict.fromkeys(("pan", "maps"), folder_mode)
        # An existing file keeps its mode, as open(path, "w") keeps it; a read-only one too.
        for kept in (0o600, 0o444):
            (out / "pan.json").chmod(kept)
            run_cli(capsys, *convert_argv(coco_file, out / "pan.json", "coco-panoptic"))
            assert stat.S_IMODE((out / "pan.json").stat().st_mode) == kept
    finally:
        os.umask(previous)


# -- dump_json: json.dumps's bytes, long integer lists by orjson ---------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**90), max_value=2**90)  # beyond orjson's 64 bits too
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(st.integers(min_value=-(2**70), max_value=2**70), max_size=20)
        | st.dictionaries(st.text() | st.integers() | st.booleans() | st.none(), children, max_size=5)
    ),
    max_leaves=40,
)


@given(json_values)
def test_dump_json_writes_the_bytes_json_dumps_writes(value) -> None:
    assert dump_json(value) == json.dumps(value).encode()


def test_dump_json_writes_a_brush_rle_as_json_does() -> None:
    rle = list(range(256)) * 1000
    assert (
        dump_json({"value": {"format": "rle", "rle": rle}})
        == json.dumps({"value": {"format": "rle", "rle": rle}}).encode()
    )

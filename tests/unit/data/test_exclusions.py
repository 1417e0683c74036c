"""The exclusion list the audit writes and the split reads, and the command that appends audit rows to it: bad
input stops it with one line and exit status 2, the list untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from smallvision.data import exclusions


def test_audit_rows_are_appended_to_the_exclusion_file_once(tmp_path):
    audit_csv = tmp_path / "label_issues.csv"
    audit_csv.write_text("path,split,label,suggested,score\na/1.jpg,test,cat,dog,0.01\na/2.jpg,train,dog,cat,0.02\n")
    target = tmp_path / "exclude.txt"
    target.write_text("# reviewed\n")
    assert exclusions.main([str(audit_csv), str(target), "label error", "2"]) == 0
    assert exclusions.main([str(audit_csv), str(target), "label error", "1", "2"]) == 0
    assert exclusions.read_exclusions(target) == {
        "a/2.jpg": "label error (labelled dog, looks cat)",
        "a/1.jpg": "label error (labelled cat, looks dog)",
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["label_issues.csv", "exclude.txt", "label error"], exclusions.USAGE),
        (["missing.csv", "exclude.txt", "label error", "1"], "cannot read the audit list missing.csv"),
        (["label_issues.csv", "exclude.txt", "label error", "0"], "row numbers must be 1 to 1, got 0"),
        (["label_issues.csv", "exclude.txt", "label error", "x"], "row numbers must be 1 to 1, got x"),
        (["near_duplicates.csv", "exclude.txt", "copy", "1"], "near_duplicates.csv is not an audit list"),
        (["label_issues.csv", "bad.txt", "label error", "1"], "bad.txt line 1: expected"),
    ],
)
def test_appending_bad_rows_is_one_line(tmp_path, monkeypatch, capsys, args, fragment):
    monkeypatch.chdir(tmp_path)
    Path("label_issues.csv").write_text("path,split,label,suggested,score\na/1.jpg,test,cat,dog,0.01\n")
    Path("near_duplicates.csv").write_text("path_a,path_b,similarity\na/1.jpg,a/2.jpg,0.99\n")
    Path("bad.txt").write_text("a/3.jpg\n")
    with pytest.raises(SystemExit) as stopped:
        exclusions.main(args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("smallvision: error: ") and fragment in err[0], err
    assert not Path("exclude.txt").exists()
    assert Path("bad.txt").read_text() == "a/3.jpg\n"

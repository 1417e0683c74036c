"""The exclusion list the audit writes and the split reads."""

from __future__ import annotations

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

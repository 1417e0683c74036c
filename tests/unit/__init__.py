"""Unit tests: one module per library module or package of src/smallvision, named after it (test_<module>.py)."""

"""Data layer: fetch the raw images (sources), decode and validate them (images), build the split manifest (split)."""

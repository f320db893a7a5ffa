"""Data quality: contracts, sources, validation rules, dataset versions and profiles."""

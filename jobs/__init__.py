"""fairshelf: the nightly pipeline for fair, transparent, inclusive and private recommendations."""

"""Vector index for similarity search, behind one small interface."""

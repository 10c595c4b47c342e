"""Issue 6: measure and react."""

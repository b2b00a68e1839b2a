"""One module per dashboard page, plus the JSON API and the health probe."""

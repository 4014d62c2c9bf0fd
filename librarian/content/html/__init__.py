"""Main content and metadata of HTML pages."""

"""From a URL to an enriched document: the guarded fetcher, decoding, main-content extraction
(HTML, PDF, text), page type and signals, and enrichment (summary, keywords, quality, chunks,
embeddings). Pure processing: nothing here knows Dagster, the API or where things are stored."""

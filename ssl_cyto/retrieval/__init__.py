"""ssl_cyto.retrieval."""

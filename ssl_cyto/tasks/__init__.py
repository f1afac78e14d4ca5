"""ssl_cyto.tasks."""

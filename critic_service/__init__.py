"""The critic service: a FastAPI app serving schema-validated faithful-scribe critiques."""

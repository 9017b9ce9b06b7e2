"""The index: parsed documents to published chunks (boilerplate, chunk, embed, publish)."""

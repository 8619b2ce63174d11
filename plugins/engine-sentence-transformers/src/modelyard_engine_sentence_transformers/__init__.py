"""modelyard's sentence-transformers engine: embeddings and rerank."""

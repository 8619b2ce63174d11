"""modelyard's llama.cpp engine (llama-cpp-python): GGUF models."""

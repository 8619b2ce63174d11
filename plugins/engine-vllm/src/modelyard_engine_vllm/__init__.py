"""modelyard engine `vllm`."""

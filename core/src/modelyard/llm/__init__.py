"""Engine-independent LLM serving logic that runs in the worker: request parameters, stop
strings, reasoning split, and the base class every LLM engine builds on."""

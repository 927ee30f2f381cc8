"""Local LM engine for DSPy: batched in-process generation, roles, and an OpenAI-compatible server."""

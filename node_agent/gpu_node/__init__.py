"""gpu-node: the agent a GPU provider runs next to an OpenAI-compatible server (vLLM, llama.cpp server, Ollama)."""

__version__ = "0.1.0"

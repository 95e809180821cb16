"""Export a run for llama.cpp and Ollama: a verified GGUF file and a Modelfile."""

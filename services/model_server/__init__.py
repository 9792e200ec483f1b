"""The model server: Triton (KServe v2 gRPC) serving `embedder` and `llm`."""

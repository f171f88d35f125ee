"""The pinned vLLM: its flags per release (catalog), the server command line the app runs
(argv), and whether the model, LoRA slots and context fit the GPU (fit)."""

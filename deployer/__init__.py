"""deployer: declarative, checked, reproducible serving of LoRA adapters with vLLM on Modal."""

__version__ = "0.1.0"

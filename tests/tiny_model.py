"""Build a tiny Qwen3 model and PEFT LoRA adapters offline, for real vLLM to serve in tests.

The model has random weights, so its text is gibberish, but it is a real Qwen3 checkpoint: vLLM
loads it with the same code path as Qwen3-4B. head_dim is 64 because vLLM's CPU attention kernel
rejects smaller heads. The tokenizer is byte-level (every UTF-8 byte is a token) with Qwen's
chat markers, so any prompt tokenizes without a trained vocabulary.

Adapters have non-zero B matrices (PEFT initialises B to zero, which would make an adapter a
no-op) and distinct seeds and ranks, so each adapter's greedy output differs from the base's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HIDDEN = 128
HEADS = 2
KV_HEADS = 1
HEAD_DIM = 64
INTERMEDIATE = 256
LAYERS = 2
VOCAB = 320  # 256 bytes + special tokens, rounded up
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ "
    "message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _projection_shapes() -> dict[str, tuple[int, int]]:
    """(out_features, in_features) of each linear layer in one decoder layer."""
    return {
        "self_attn.q_proj": (HEADS * HEAD_DIM, HIDDEN),
        "self_attn.k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
        "self_attn.v_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
        "self_attn.o_proj": (HIDDEN, HEADS * HEAD_DIM),
        "mlp.gate_proj": (INTERMEDIATE, HIDDEN),
        "mlp.up_proj": (INTERMEDIATE, HIDDEN),
        "mlp.down_proj": (HIDDEN, INTERMEDIATE),
    }


def build_base_model(folder: Path, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def normal(*shape, std=0.05):
        return rng.normal(0.0, std, size=shape).astype(np.float16)

    tensors = {
        "model.embed_tokens.weight": normal(VOCAB, HIDDEN, std=0.5),
        "model.norm.weight": np.ones(HIDDEN, np.float16),
    }
    for i in range(LAYERS):
        prefix = f"model.layers.{i}"
        tensors[f"{prefix}.input_layernorm.weight"] = np.ones(HIDDEN, np.float16)
        tensors[f"{prefix}.post_attention_layernorm.weight"] = np.ones(HIDDEN, np.float16)
        tensors[f"{prefix}.self_attn.q_norm.weight"] = np.ones(HEAD_DIM, np.float16)
        tensors[f"{prefix}.self_attn.k_norm.weight"] = np.ones(HEAD_DIM, np.float16)
        for name, shape in _projection_shapes().items():
            tensors[f"{prefix}.{name}.weight"] = normal(*shape)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})

    config = {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "vocab_size": VOCAB,
        "bos_token_id": 256,
        "eos_token_id": 258,
        "torch_dtype": "float16",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(
        json.dumps({"eos_token_id": 258, "bos_token_id": 256})
    )
    _write_tokenizer(folder)
    return folder


def _write_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    byte_alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: i for i, char in enumerate(sorted(byte_alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "chat_template": CHAT_TEMPLATE,
                "bos_token": None,
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "model_max_length": 2048,
            },
            indent=2,
        )
    )


def build_lora_adapter(
    folder: Path,
    base_model: str,
    rank: int,
    seed: int,
    alpha: int | None = None,
    targets: list[str] | None = None,
) -> Path:
    """A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    targets = targets or LORA_TARGETS
    tensors = {}
    for i in range(LAYERS):
        for name, (out_features, in_features) in _projection_shapes().items():
            if name.split(".")[-1] not in targets:
                continue
            prefix = f"base_model.model.model.layers.{i}.{name}"
            tensors[f"{prefix}.lora_A.weight"] = rng.normal(
                0, 0.3, size=(rank, in_features)
            ).astype(np.float16)
            tensors[f"{prefix}.lora_B.weight"] = rng.normal(
                0, 0.3, size=(out_features, rank)
            ).astype(np.float16)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": alpha if alpha is not None else rank,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "bias": "none",
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "use_dora": False,
        "use_rslora": False,
        "inference_mode": True,
    }
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return folder

"""Build a small Llama-architecture model with random weights that vLLM serves offline.

No model hub is reachable on the machines camel-vllm is developed and tested on, so the
model is made here: :class:`transformers.LlamaConfig` + ``LlamaForCausalLM`` with random
weights (seeded), and a byte-level BPE tokenizer trained with ``tokenizers`` on text taken
from the Python standard library's own docstrings (always present, no download). The
tokenizer is saved as a ``PreTrainedTokenizerFast`` with a ``chat_template`` so that chat
endpoints work too.

docs/vllm-integration.md ("Tiny models") has the step time of each size.
"""

from __future__ import annotations

import json
import logging
import os
import pydoc
from dataclasses import asdict, dataclass

logger = logging.getLogger("vllm.camel")

#: Standard-library modules whose docstrings make the tokenizer's training text.
CORPUS_MODULES: tuple[str, ...] = (
    "argparse", "asyncio", "collections", "contextlib", "csv", "dataclasses", "datetime",
    "decimal", "email", "functools", "heapq", "http.client", "inspect", "itertools", "json",
    "logging", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "statistics",
    "string", "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest", "urllib.request",
    "uuid", "zipfile",
)

SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<pad>")

#: A minimal chat template: role-tagged turns, then the assistant prefix when asked for.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of the model. ``max_position_embeddings`` bounds vLLM's ``--max-model-len``."""

    layers: int = 2
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    intermediate: int | None = None  # default: 4 x hidden (rounded to a multiple of 64)
    vocab: int = 4096
    max_position_embeddings: int = 4096
    seed: int = 0

    def intermediate_size(self) -> int:
        if self.intermediate is not None:
            return self.intermediate
        return max(64, (4 * self.hidden) // 64 * 64)


def corpus_text() -> list[str]:
    """Paragraphs of English-like text from stdlib docstrings (deterministic per Python)."""
    import importlib

    paragraphs: list[str] = []
    for name in CORPUS_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - a stripped-down Python
            continue
        text = pydoc.render_doc(module, renderer=pydoc.plaintext)  # type: ignore[attr-defined]  # not in typeshed
        paragraphs.extend(p.strip() for p in text.split("\n\n") if len(p.strip()) > 40)
    return paragraphs


def train_tokenizer(vocab: int):
    """A byte-level BPE tokenizer (``tokenizers``), wrapped as ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus_text(), trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=1 << 30,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _pin_chat_template(path: str) -> None:
    """Also write the template into ``tokenizer_config.json`` (transformers 5 writes only
    ``chat_template.jinja``; older readers look in the JSON)."""
    config_path = os.path.join(path, "tokenizer_config.json")
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    config["chat_template"] = CHAT_TEMPLATE
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(config_path, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)


def build_tiny_model(
    path: str,
    layers: int = 2,
    hidden: int = 128,
    *,
    heads: int | None = None,
    kv_heads: int | None = None,
    vocab: int = 4096,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> TinyModelSpec:
    """Write config, random weights (safetensors) and tokenizer into ``path``. Returns the spec.

    ``heads`` defaults to ``hidden // 32`` (head size 32), ``kv_heads`` to half of it.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = heads or max(1, hidden // 32)
    kv_heads = kv_heads or max(1, heads // 2)
    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden {hidden} must divide by heads {heads}, and heads by kv_heads {kv_heads}")
    spec = TinyModelSpec(
        layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, vocab=vocab,
        max_position_embeddings=max_position_embeddings, seed=seed,
    )
    os.makedirs(path, exist_ok=True)
    tokenizer = train_tokenizer(vocab)
    tokenizer.save_pretrained(path)
    _pin_chat_template(path)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=spec.intermediate_size(),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.to(torch.float32).save_pretrained(path, safe_serialization=True)
    with open(os.path.join(path, "camel_tiny_model.json"), "w", encoding="utf-8") as fh:
        json.dump(asdict(spec), fh, indent=2)
    logger.info("camel: wrote tiny model %s (%d layers, hidden %d, vocab %d)", path, layers, hidden, len(tokenizer))
    return spec

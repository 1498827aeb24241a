"""``camel-vllm make-tiny-model``: a Llama model + local tokenizer that loads offline.

(vLLM serving it is covered by every real-engine test through the ``tiny_model_dir``
fixture; this checks the files with transformers, without an engine.)
"""

from __future__ import annotations

import json

from camel_vllm.cli import main as cli_main


def test_make_tiny_model_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "m"
    code = cli_main(["make-tiny-model", str(out), "--layers", "1", "--hidden", "64", "--vocab", "600",
                     "--max-position-embeddings", "2048", "--seed", "7"])
    assert code == 0
    assert "1 layers, hidden 64" in capsys.readouterr().out

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "llama" and config.num_hidden_layers == 1 and config.hidden_size == 64
    assert config.max_position_embeddings == 2048
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == config.vocab_size <= 600
    ids = tokenizer("Return the number of items in a container.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) > 3
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Return the number of items in a container."
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat == "<s><|user|>\nhi\n<|assistant|>\n"
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"]
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == config.vocab_size



def test_make_tiny_model_rejects_bad_sizes(tmp_path, capsys):
    assert cli_main(["make-tiny-model", str(tmp_path / "x"), "--layers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "camel-vllm make-tiny-model: --layers=0: must be >= 1"
    assert cli_main(["make-tiny-model", str(tmp_path / "y"), "--hidden", "100", "--heads", "3"]) == 2

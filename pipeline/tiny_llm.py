"""A random-weight chat LLM in the real checkpoint format (see ``pipeline.tiny_models``): a Llama
causal LM with a byte-level BPE tokenizer and a ChatML chat template."""

from __future__ import annotations

from pathlib import Path

from pipeline.tiny_tokenizers import BPE_VOCAB_SIZE, SEED, token_id_of, train_bpe

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def write_tiny_llm(out_dir: Path) -> Path:
    """Write a random-weight causal LM (Llama architecture) with a ChatML chat template."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = train_bpe(BPE_VOCAB_SIZE, special_tokens=specials)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=2048,
        chat_template=_CHAT_TEMPLATE,
    )
    tokenizer.save_pretrained(out_dir)

    ids = token_id_of(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=None,
        eos_token_id=ids("<|im_end|>"),
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=True,
    )
    torch.manual_seed(SEED + 1)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[ids("<|im_end|>"), ids("<|endoftext|>")],
        pad_token_id=ids("<|endoftext|>"),
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    return out_dir

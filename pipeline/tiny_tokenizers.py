"""What the generated tiny models share: a deterministic byte-level BPE trained on a fixed corpus,
and the seed their random weights start from (see ``pipeline.tiny_models`` for why they exist)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SEED = 1234
BPE_VOCAB_SIZE = 1000

# A fixed corpus for the byte-level BPE merges (plain English prose, written for this file).
_CORPUS = """
and so my fellow citizens ask not what the service can do for you but what you can do with it
the quick brown fox jumps over the lazy dog while the band plays on in the park
speech recognition turns sound into text one window of thirty seconds at a time
it was the first great sorrow of his life it was not so much the loss of the cotton itself
but the hopes and the dreams built around it that made the evening long and quiet
we will meet again tomorrow morning at nine to talk about the budget and the plan
please restore the punctuation and the capital letters without changing any word
a summary gives the main points of a talk in a few short sentences and a list of bullets
numbers like one two three four five six seven eight nine ten hundred thousand million
""".strip()


def train_bpe(vocab_size: int, special_tokens: list[str]):
    """Train a deterministic byte-level BPE on the fixed corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    return tok


def token_id_of(tokenizer: PreTrainedTokenizerBase) -> Callable[[str], int]:
    """``tokenizer.convert_tokens_to_ids`` for one token: its id (the method also takes lists)."""

    def token_id(token: str) -> int:
        found = tokenizer.convert_tokens_to_ids(token)
        assert isinstance(found, int), f"{token!r} has no single id in the tokenizer: {found!r}"
        return found

    return token_id

"""The scoring pass over Whisper's output: ``avg_logprob``, ``no_speech_prob`` and token logprobs.

OpenAI's ``verbose_json`` reports per decoding window ``avg_logprob`` (raw model log-probabilities,
before Whisper's suppress rules) and ``no_speech_prob`` (the no-speech token at the
start-of-transcript position). Both come from one forward of the decoder over the generated
tokens, sharing the batch's encoder output, instead of asking ``generate`` for per-step scores,
which transformers only returns together with attention weights. Asked for, the same pass gives
each text token's log-probability (OpenAI's ``logprobs``), so logprobs cost no second forward.

Apart from ``pipeline.whisper`` because it never changes what is generated: it reads
``generate``'s sequences after the fact, and lining its per-position log-probabilities up with
transformers' segments and turning byte-level BPE tokens back into bytes is bookkeeping of its
own.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import transformers
from transformers import PreTrainedTokenizerBase, WhisperForConditionalGeneration
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.modeling_outputs import BaseModelOutput

from pipeline.schemas import TokenLogprob

# Whisper's vocabulary is byte-level BPE: each byte is spelled as one printable character ("Ġ" is
# the space), so a token's real bytes come back through the inverse of GPT-2's byte table.
_BYTE_OF_CHAR = {char: byte for byte, char in bytes_to_unicode().items()}


class WindowScore(NamedTuple):
    """What the scoring pass says about one decoded window."""

    avg_logprob: float
    no_speech_prob: float


class WhisperScorer:
    """Scores ``generate``'s sequences for a loaded Whisper, one decoder forward per batch."""

    def __init__(
        self,
        model: WhisperForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        device: torch.device,
        *,
        eos_token_id: int,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.eos_token_id = eos_token_id
        # large-v3 calls it <|nospeech|>, earlier checkpoints <|nocaptions|>.
        self.no_speech_token_id = next(
            tid
            for tid in map(self.tokenizer.convert_tokens_to_ids, ["<|nospeech|>", "<|nocaptions|>"])
            if tid is not None and tid != self.tokenizer.unk_token_id
        )

    def score(
        self, encoded: BaseModelOutput, sequences: torch.Tensor, prefix_len: int
    ) -> tuple[list[WindowScore], torch.Tensor]:
        """A ``WindowScore`` per row of ``sequences``, and the log-probability of each token of
        ``sequences`` after the first (the token at position ``p`` is scored at ``p - 1``).
        ``prefix_len`` is the length of the prompt and the 3 start tokens before the generated ones.

        As in Whisper, the average is over the generated tokens and the end-of-text token,
        divided by the number of generated tokens + 1; the no-speech probability is read at the
        start-of-transcript position.
        """
        sequences = sequences.to(self.device)
        logits = self.model(encoder_outputs=encoded, decoder_input_ids=sequences[:, :-1]).logits.float()
        targets = sequences[:, 1:]
        token_logprobs = logits.gather(-1, targets[..., None])[..., 0] - logits.logsumexp(-1)
        sot = prefix_len - 3
        no_speech = logits[:, sot].softmax(-1)[:, self.no_speech_token_id]
        results = []
        for row in range(sequences.shape[0]):
            generated = sequences[row, prefix_len:]
            ends = (generated == self.eos_token_id).nonzero()
            n = int(ends[0]) if len(ends) else generated.numel()
            counted = min(n + 1, generated.numel())  # the generated tokens and the end-of-text
            total = token_logprobs[row, prefix_len - 1 : prefix_len - 1 + counted].sum()
            results.append(WindowScore(round(float(total) / (n + 1), 4), round(float(no_speech[row]), 4)))
        return results, token_logprobs

    def text_token_logprobs(
        self, raw_segments: list[dict], sequence: torch.Tensor, scored: torch.Tensor
    ) -> list[TokenLogprob]:
        """The text tokens of the segments with their log-probabilities, in order. ``sequence`` is
        the window's row of ``generate``'s sequences (prompt, 3 start tokens, generated tokens),
        ``scored`` its row of ``score``'s log-probabilities (position ``p`` scored at ``p - 1``);
        transformers' ``idxs`` say where each segment sits in ``sequence``."""
        ids, values = sequence.tolist(), scored.tolist()
        logprobs: list[TokenLogprob] = []
        for raw in raw_segments:
            first, last = raw["idxs"]
            tokens = raw["tokens"].tolist()
            if ids[first:last] != tokens:
                raise RuntimeError(
                    "transformers' segment positions do not match the generated sequence, so token "
                    f"logprobs cannot be aligned; use a transformers version within the project's pin "
                    f"(this is {transformers.__version__})"
                )
            logprobs += [
                self.token_logprob(token, values[position - 1])
                for position, token in enumerate(tokens, start=first)
                if token < self.eos_token_id
            ]
        return logprobs

    def token_logprob(self, token: int, logprob: float) -> TokenLogprob:
        """One token as OpenAI reports it: its text, its log-probability and its raw bytes (a
        token holding part of a UTF-8 character reads as U+FFFD, its bytes stay exact)."""
        data = bytes(_BYTE_OF_CHAR[char] for char in self.tokenizer.convert_ids_to_tokens(token))
        return TokenLogprob(token=data.decode("utf-8", errors="replace"), logprob=logprob, bytes=list(data))

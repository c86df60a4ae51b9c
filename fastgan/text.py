"""Captions -> vectors for text-conditional GANs: a character tokenizer and a caption encoder.

Character level, as Reed et al.'s char-CNN-RNN: no vocabulary file to ship or download,
and any caption a user types can be encoded (characters outside the alphabet become one
"unknown" symbol). The encoder is small and trained jointly with the GAN, or loaded,
frozen, from a file the user supplies (`save_caption_encoder` writes one; a gancls
checkpoint works too). Nothing is downloaded.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PAD, UNKNOWN = 0, 1
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 ,.;:!?'\"-()/&+%"
VOCAB_SIZE = len(ALPHABET) + 2
_INDEX = {char: i + 2 for i, char in enumerate(ALPHABET)}
_SPACES = re.compile(r"\s+")
ENCODER_FORMAT = "fastgan.caption_encoder"
DILATIONS = (1, 2, 4)  # three kernel-3 convolutions see 15 characters: a word or two on each side


def normalize_caption(caption: str) -> str:
    """Lower case, runs of whitespace made one space, ends trimmed; raises for an empty caption."""
    if not isinstance(caption, str):
        raise TypeError(f"a caption must be a str, got {type(caption).__name__}")
    text = _SPACES.sub(" ", caption).strip().lower()
    if not text:
        raise ValueError(f"caption {caption!r} is empty")
    return text


def tokenize(captions: list[str], max_len: int) -> torch.Tensor:
    """[N, max_len] int64 character ids: PAD (0) after the caption, UNKNOWN (1) for characters outside
    ALPHABET; captions longer than max_len are cut there."""
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    if isinstance(captions, str):
        raise TypeError("captions must be a list of str, not one str")
    tokens = torch.full((len(captions), max_len), PAD, dtype=torch.long)
    for row, caption in enumerate(captions):
        ids = [_INDEX.get(char, UNKNOWN) for char in normalize_caption(caption)[:max_len]]
        tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return tokens


def check_tokens(tokens: torch.Tensor, vocab_size: int, batch: int | None = None) -> None:
    if tokens.dim() != 2 or (batch is not None and tokens.shape[0] != batch):
        expected = f"[{batch if batch is not None else 'N'}, length]"
        raise ValueError(f"tokens must have shape {expected} (character ids from fastgan.text.tokenize); "
                         f"got {tuple(tokens.shape)}")
    if tokens.dtype != torch.long:
        raise ValueError(f"tokens must be int64 character ids; got dtype {tokens.dtype}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"tokens must be in [0, {vocab_size}); got values in [{tokens.min().item()}, "
                         f"{tokens.max().item()}]")
    if tokens.numel() and not (tokens != PAD).any(1).all():
        raise ValueError("every caption needs at least one character; a row of tokens is all padding")


class CaptionEncoder(nn.Module):
    """tokens [N, L] -> caption embedding [N, text_dim].

    Character embeddings, three dilated kernel-3 Conv1d + ReLU layers, the mean over the
    caption's characters, one Linear. Padding is zeroed before every convolution, so a
    caption's embedding does not depend on how much padding follows it.
    """

    def __init__(self, vocab_size: int = VOCAB_SIZE, char_dim: int = 32, text_dim: int = 256):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("char_dim", char_dim), ("text_dim", text_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if vocab_size < 3:
            raise ValueError(f"vocab_size must leave room for PAD and UNKNOWN plus characters, got {vocab_size}")
        self.vocab_size, self.text_dim = vocab_size, text_dim
        self.embed = nn.Embedding(vocab_size, char_dim, padding_idx=PAD)
        widths = [char_dim] + [text_dim] * len(DILATIONS)
        self.convs = nn.ModuleList(nn.Conv1d(w_in, w_out, 3, padding=d, dilation=d)
                                   for w_in, w_out, d in zip(widths, widths[1:], DILATIONS))
        self.proj = nn.Linear(text_dim, text_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_tokens(tokens, self.vocab_size)
        tokens = tokens[:, :int((tokens != PAD).sum(1).max())]  # trailing all-padding columns change nothing
        mask = (tokens != PAD).unsqueeze(1).to(self.proj.weight.dtype)  # [N, 1, L]
        x = self.embed(tokens).transpose(1, 2)
        for conv in self.convs:
            x = F.relu(conv(x * mask))
        pooled = (x * mask).sum(2) / mask.sum(2)
        return self.proj(pooled)


def encoder_args(vocab_size: int = VOCAB_SIZE, char_dim: int = 32, text_dim: int = 256) -> dict:
    return {"vocab_size": vocab_size, "char_dim": char_dim, "text_dim": text_dim}


def save_caption_encoder(encoder: CaptionEncoder, path: str | Path) -> Path:
    """A file `load_caption_encoder` (and model.text_encoder) reads: constructor args + weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    convs = encoder.convs[0]
    args = encoder_args(encoder.vocab_size, convs.in_channels, encoder.text_dim)
    torch.save({"format": ENCODER_FORMAT, "args": args, "state_dict": encoder.state_dict()}, path)
    return path


def load_caption_encoder(path: str | Path) -> tuple[dict, dict]:
    """(constructor args, state_dict) of a caption encoder file or of the generator of a gancls checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caption encoder file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and state.get("format") == ENCODER_FORMAT:
        return dict(state["args"]), state["state_dict"]
    if isinstance(state, dict) and state.get("family") == "gancls":
        prefix = "text.encoder."  # where TextConditionedGenerator keeps it
        weights = {k[len(prefix):]: v for k, v in state["models"]["G"].items() if k.startswith(prefix)}
        return dict(state["model_args"]["G"]["encoder"]), weights
    raise ValueError(f"{path} is neither a caption encoder file (written by fastgan.text.save_caption_encoder) "
                     f"nor a gancls checkpoint")


__all__ = ["ALPHABET", "PAD", "UNKNOWN", "VOCAB_SIZE", "CaptionEncoder", "check_tokens", "encoder_args",
           "load_caption_encoder", "normalize_caption", "save_caption_encoder", "tokenize"]

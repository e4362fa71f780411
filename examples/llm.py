"""A tiny character-level GPT that trains anywhere: one CPU, a GPU, or a hive of them.

    python examples/llm.py                                   # one process, about a minute on CPU
    torchrun --standalone --nproc-per-node 2 examples/llm.py --mode diloco --sync-every 25
    gpuhive train examples/llm.py --nodes 3 -- --steps 600   # friends' GPUs, resumable

The training text is generated here, from --seed: a small made-up language whose grammar
has structure a model can learn (gender and number agreement, relative clauses that put
distance between a subject and its verb). Nothing is downloaded.

Output (rank 0 only, except the last line, which every rank prints):

    resumed from step 200 (checkpoint of node-b, received), held-out loss 1.3456
    step 100 loss 1.2345                                         # held-out loss, synced weights
    target loss 1.1000 reached at step 300 after 41.20 s         # with --target-loss
    stats mode=ddp compress=none world=2 steps=400 ...           # wall clock and traffic
    final loss 1.0123 weights_sha256 3f5a...                     # on EVERY rank

Identical ``weights_sha256`` on all ranks proves they ended with the same weights.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from gpuhive.errors import GpuhiveError
from gpuhive.train import checkpoint
from gpuhive.train.compression import Trainable, wrap_model
from gpuhive.train.world import Compress, Mode, World, device_for, init_distributed, shutdown

# ---------------------------------------------------------------------------------------
# 1. A synthetic language
# ---------------------------------------------------------------------------------------

ALPHABET = "\n .abcdefghijklmnopqrstuvwxyz"
CONSONANTS = "bdfgklmnprstvz"
T = TypeVar("T")
VOWELS = "aeiou"


class SyntheticLanguage:
    """A probabilistic grammar over made-up words, fixed by ``seed``.

    Nouns have a gender (class A or B) and a number. Determiners and adjectives agree with
    their noun in gender and number; verbs agree with their subject in number, also across
    a relative clause ("the cat that sees the dogs RUNS"). Word frequencies are Zipf-like.
    """

    DET: ClassVar[dict[tuple[str, str], str]] = {
        ("A", "sg"): "lo", ("A", "pl"): "los", ("B", "sg"): "ka", ("B", "pl"): "kai"}
    NOUN_PL: ClassVar[dict[str, str]] = {"A": "en", "B": "i"}
    ADJ_END: ClassVar[dict[tuple[str, str], str]] = {
        ("A", "sg"): "o", ("A", "pl"): "os", ("B", "sg"): "a", ("B", "pl"): "as"}
    VERB_END: ClassVar[dict[str, str]] = {"sg": "et", "pl": "un"}
    RELATIVE = "ve"
    AND = "e"

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        words = self._stems(rng, 70)
        self.nouns = [(w, "A" if i % 2 else "B") for i, w in enumerate(words[:28])]
        self.transitive = words[28:42]
        self.intransitive = words[42:52]
        self.adjectives = words[52:64]
        self.adverbs = [w + "ly" for w in words[64:70]]

    @staticmethod
    def _stems(rng: random.Random, n: int) -> list[str]:
        seen: set[str] = set()
        while len(seen) < n:
            syllables = rng.choice((1, 2, 2, 3))
            stem = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables))
            if rng.random() < 0.4:
                stem += rng.choice(CONSONANTS)
            seen.add(stem)
        words = sorted(seen)
        rng.shuffle(words)
        return words

    @staticmethod
    def _zipf(rng: random.Random, items: Sequence[T]) -> T:
        weights = [1.0 / (rank + 1) for rank in range(len(items))]
        return rng.choices(items, weights)[0]

    def noun_phrase(self, rng: random.Random, depth: int) -> tuple[list[str], str]:
        noun, gender = self._zipf(rng, self.nouns)
        number = "pl" if rng.random() < 0.4 else "sg"
        words = [self.DET[gender, number]]
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            words.append(self._zipf(rng, self.adjectives) + self.ADJ_END[gender, number])
        words.append(noun + (self.NOUN_PL[gender] if number == "pl" else ""))
        if depth < 1 and rng.random() < 0.25:  # "that sees the dogs": agrees with this noun
            words += [self.RELATIVE, *self.verb_phrase(rng, number, depth + 1)]
        return words, number

    def verb_phrase(self, rng: random.Random, number: str, depth: int) -> list[str]:
        if rng.random() < 0.6:
            obj, _ = self.noun_phrase(rng, depth + 1)
            words = [self._zipf(rng, self.transitive) + self.VERB_END[number], *obj]
        else:
            words = [self._zipf(rng, self.intransitive) + self.VERB_END[number]]
        if rng.random() < 0.2:
            words.append(self._zipf(rng, self.adverbs))
        return words

    def sentence(self, rng: random.Random) -> str:
        clauses = []
        for _ in range(2 if rng.random() < 0.2 else 1):
            subject, number = self.noun_phrase(rng, 0)
            clauses.append(" ".join(subject + self.verb_phrase(rng, number, 0)))
        return f" {self.AND} ".join(clauses) + "."

    def text(self, n_chars: int, seed: int) -> str:
        """About ``n_chars`` of sentences, a paragraph break every few; deterministic."""
        rng = random.Random(seed)
        parts: list[str] = []
        size = 0
        while size < n_chars:
            s = self.sentence(rng) + ("\n" if rng.random() < 0.2 else " ")
            parts.append(s)
            size += len(s)
        return "".join(parts)[:n_chars]


def encode(text: str) -> torch.Tensor:
    index = {c: i for i, c in enumerate(ALPHABET)}
    return torch.tensor([index[c] for c in text], dtype=torch.long)


# ---------------------------------------------------------------------------------------
# 2. A small GPT
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GPTConfig:
    vocab: int = len(ALPHABET)
    block: int = 64        # context length in characters
    width: int = 96
    layers: int = 3
    heads: int = 4


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(cfg.width)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.ln2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, 4 * cfg.width), nn.GELU(),
                                 nn.Linear(4 * cfg.width, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # no mask buffer to sync
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab, cfg.width)
        self.positions = nn.Embedding(cfg.block, cfg.width)
        self.blocks = nn.Sequential(*(Block(cfg) for _ in range(cfg.layers)))
        self.ln = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, cfg.vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.blocks(self.tokens(idx) + self.positions(pos))
        return self.head(self.ln(x))


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


# ---------------------------------------------------------------------------------------
# 3. Data: every batch is a pure function of (seed, step, rank), so resuming is exact
# ---------------------------------------------------------------------------------------


def batch(data: torch.Tensor, *, seed: int, step: int, rank: int, size: int, block: int,
          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + rank)
    starts = torch.randint(len(data) - block - 1, (size,), generator=g)
    x = torch.stack([data[s:s + block] for s in starts.tolist()])
    y = torch.stack([data[s + 1:s + 1 + block] for s in starts.tolist()])
    return x.to(device), y.to(device)


@torch.no_grad()
def evaluate(model: nn.Module, data: torch.Tensor, block: int, device: torch.device) -> float:
    """Mean loss over fixed held-out windows: the same number on every rank that holds the
    same weights."""
    model.eval()
    starts = range(0, len(data) - block - 1, (len(data) - block - 1) // 32)[:32]
    x = torch.stack([data[s:s + block] for s in starts]).to(device)
    y = torch.stack([data[s + 1:s + 1 + block] for s in starts]).to(device)
    loss = loss_of(model(x), y).item()
    model.train()
    return float(loss)


def weights_sha256(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# 4. Training
# ---------------------------------------------------------------------------------------


def parse_args(world: World, argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32, help="sequences per rank and step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=100, help="0: never")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--mode", choices=[m.value for m in Mode], default=world.mode.value)
    p.add_argument("--sync-every", type=int, default=world.sync_every, help="DiLoCo H")
    p.add_argument("--compress", choices=[c.value for c in Compress],
                   default=world.compress.value if world.compress else None,
                   help="default: none for ddp, bf16 for diloco")
    p.add_argument("--target-loss", type=float, default=None,
                   help="stop once the held-out loss is at or below this")
    args = p.parse_args(argv)
    if args.mode == Mode.DILOCO.value:  # weights are only synced (comparable) every H steps
        args.eval_every = math.ceil(args.eval_every / args.sync_every) * args.sync_every
        if args.checkpoint_every:
            h = args.sync_every
            args.checkpoint_every = math.ceil(args.checkpoint_every / h) * h
    return args


def train(world: World, args: argparse.Namespace) -> None:
    device = device_for(world)
    lang = SyntheticLanguage(args.seed)
    train_data = encode(lang.text(300_000, seed=args.seed * 2 + 1))
    eval_data = encode(lang.text(20_000, seed=args.seed * 2 + 2))
    cfg = GPTConfig()

    torch.manual_seed(args.seed)
    model = GPT(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95),
                                  weight_decay=0.01)
    trainable = wrap_model(model, optimizer, mode=args.mode, compress=args.compress,
                           sync_every=args.sync_every)

    resumed = checkpoint.resume(world.checkpoint_dir, map_location=device)
    if resumed.state is not None:
        trainable.load_state_dict(resumed.state)
    trainable.sync_from(0)  # a node that joined takes rank 0's weights (and outer state)
    say: Callable[..., Any] = print if world.is_main else _quiet
    if resumed.state is not None:
        how = ", received" if resumed.received else ""
        held_out = evaluate(model, eval_data, cfg.block, device)
        say(f"resumed from step {resumed.step} (checkpoint of {resumed.source_node}{how}), "
            f"held-out loss {held_out:.4f}", flush=True)

    start = time.perf_counter()
    step = resumed.step
    for step in range(resumed.step + 1, args.steps + 1):
        x, y = batch(train_data, seed=args.seed, step=step, rank=world.rank,
                     size=args.batch_size, block=cfg.block, device=device)
        loss = loss_of(trainable.module(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        trainable.step()

        stop = False
        if step % args.eval_every == 0 and trainable.synced:
            held_out = evaluate(model, eval_data, cfg.block, device)
            say(f"step {step} loss {held_out:.4f}", flush=True)
            if args.target_loss is not None:
                stop = trainable.agree(held_out <= args.target_loss)
                if stop:
                    say(f"target loss {args.target_loss:.4f} reached at step {step} after "
                        f"{time.perf_counter() - start:.2f} s")
        if args.checkpoint_every and step % args.checkpoint_every == 0 and trainable.synced:
            checkpoint.save(trainable.state_dict(), step, world.checkpoint_dir)
        if stop:
            break

    trainable.finish()  # DiLoCo: a last outer step, so every rank ends with the same weights
    seconds = time.perf_counter() - start
    report(world, args, trainable, steps=step - resumed.step, seconds=seconds, say=say)
    final = evaluate(model, eval_data, cfg.block, device)
    print(f"final loss {final:.4f} weights_sha256 {weights_sha256(model)}", flush=True)


def report(world: World, args: argparse.Namespace, trainable: Trainable, *, steps: int,
           seconds: float, say: Callable[..., Any]) -> None:
    samples = steps * args.batch_size  # per rank; every rank sends the same bytes
    meter = trainable.meter
    fields = {
        "mode": trainable.mode.value, "compress": trainable.compress.value,
        "world": world.world_size, "steps": steps, "samples": samples * world.world_size,
        "seconds": f"{seconds:.2f}", "train_bytes": meter.training_bytes,
        "train_calls": meter.training_calls,
        "bytes_per_sample": f"{meter.training_bytes / max(samples, 1):.2f}",
        "setup_bytes": meter.bytes["setup"], "control_bytes": meter.bytes["control"],
    }
    say("stats " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def _quiet(*_args: object, **_kwargs: object) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    try:
        world = init_distributed()
        args = parse_args(world, argv)
        train(world, args)
    except GpuhiveError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

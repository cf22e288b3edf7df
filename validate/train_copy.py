"""In-context copying with a small GPT-NeoX causal transformer, the setting in which
induction heads form: copy accuracy sits near chance for a while, then jumps to ~1.

    /usr/bin/python3 validate/train_copy.py OUT --seed S [--control] [--steps N] [--save-every K]

Each sequence (length SEQ) is a random filler prefix, a random segment S of length L,
then S again; L varies per sequence (MIN_L..MAX_L), so the copy cannot be done by a
fixed positional look-back and needs a content-matching (induction) circuit. Prefix and
S are drawn without repetition, so every copied token has a unique source. Loss and
eval_accuracy are taken on the same targets: the second copy of S without its first
token (the rest of a sequence is unpredictable noise); eval on a fixed held-out batch.
--control replaces the second copy by an independent uniform random sequence: nothing
there is predictable beyond the unigram, accuracy stays at 1/VOCAB.

The model is Hugging Face's GPTNeoXForCausalLM re-implemented (fused per-head
interleaved qkv, partial rotary, parallel residual, untied embed_out) and saved under
its tensor names and [out, in] shapes, so emergectl maps it as gpt-neox. Checkpoints
(step 0 included) go to OUT/checkpoint-STEP as the Trainer writes them (see hfckpt.py).
Torch runs 2 intra-op threads; OpenBLAS is kept to one thread per caller, as its own
pool on top of torch's oversubscribes the 2 cores (2-3x slower)."""
import argparse
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hfckpt import save_and_report  # noqa: E402

CONFIG = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "vocab_size": 128,
          "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 256,
          "hidden_act": "gelu", "rotary_pct": 0.5, "rotary_emb_base": 10000, "max_position_embeddings": 32,
          "layer_norm_eps": 1e-5, "use_parallel_residual": True, "tie_word_embeddings": False,
          "initializer_range": 0.02, "attention_dropout": 0.0, "hidden_dropout": 0.0,
          "bos_token_id": 0, "eos_token_id": 0, "torch_dtype": "float32"}
SEQ, MIN_L, MAX_L = CONFIG["max_position_embeddings"], 6, 16
BATCH, EVAL_BATCH, LR = 64, 512, 1e-3


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """NeoX rotary embedding on the first rotary_pct of each head's dimensions."""

    def __init__(self, head_size, cfg):
        super().__init__()
        self.dims = int(head_size * cfg["rotary_pct"])
        inv_freq = 1.0 / cfg["rotary_emb_base"] ** (torch.arange(0, self.dims, 2).float() / self.dims)
        freqs = torch.outer(torch.arange(cfg["max_position_embeddings"]).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)

    def forward(self, x):
        t = x.shape[-2]
        rot, rest = x[..., :self.dims], x[..., self.dims:]
        rot = rot * self.cos[:t] + rotate_half(rot) * self.sin[:t]
        return torch.cat((rot, rest), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h = cfg["hidden_size"]
        self.heads, self.head_size = cfg["num_attention_heads"], h // cfg["num_attention_heads"]
        self.query_key_value = nn.Linear(h, 3 * h)
        self.dense = nn.Linear(h, h)
        self.rotary = Rotary(self.head_size, cfg)

    def forward(self, x):
        b, t, h = x.shape
        qkv = self.query_key_value(x).view(b, t, self.heads, 3 * self.head_size).permute(0, 2, 1, 3)
        q, k, v = qkv.split(self.head_size, dim=-1)
        q, k = self.rotary(q), self.rotary(k)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_size)
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        ctx = scores.masked_fill(mask, float("-inf")).softmax(dim=-1) @ v
        return self.dense(ctx.permute(0, 2, 1, 3).reshape(b, t, h))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])
        self.dense_4h_to_h = nn.Linear(cfg["intermediate_size"], cfg["hidden_size"])

    def forward(self, x):
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x)))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.input_layernorm = nn.LayerNorm(h, eps=eps)
        self.post_attention_layernorm = nn.LayerNorm(h, eps=eps)
        self.attention = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x):
        return x + self.attention(self.input_layernorm(x)) + self.mlp(self.post_attention_layernorm(x))


class GPTNeoX(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_in = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.final_layer_norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, ids):
        x = self.embed_in(ids)
        for layer in self.layers:
            x = layer(x)
        return self.final_layer_norm(x)


class GPTNeoXForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gpt_neox = GPTNeoX(cfg)
        self.embed_out = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        self.apply(lambda m: init_weights(m, cfg["initializer_range"]))

    def forward(self, ids):
        return self.embed_out(self.gpt_neox(ids))


def init_weights(module, std):
    """HF's GPTNeoXPreTrainedModel._init_weights."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, 0.0, std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def make_batch(gen, n, control):
    """(tokens [n, SEQ], mask [n, SEQ-1] of the scored next-token targets)."""
    vocab = CONFIG["vocab_size"]
    lengths = torch.randint(MIN_L, MAX_L + 1, (n,), generator=gen)
    distinct = torch.rand(n, vocab, generator=gen).argsort(dim=1)[:, :SEQ]
    noise = torch.randint(0, vocab, (n, SEQ), generator=gen)
    pos = torch.arange(SEQ).expand(n, SEQ)
    start = (SEQ - lengths).unsqueeze(1)  # first position of the second copy
    second = pos >= start
    copied = distinct.gather(1, (pos - lengths.unsqueeze(1)).clamp(min=0))
    tokens = torch.where(second, noise if control else copied, distinct)
    mask = pos[:, 1:] > start  # targets at positions start+1..SEQ-1
    return tokens, mask


def evaluate(model, batch):
    tokens, mask = batch
    with torch.no_grad():
        pred = model(tokens[:, :-1]).argmax(dim=-1)
    return float((pred == tokens[:, 1:])[mask].float().mean())


def train_step(model, opt, gen, control):
    tokens, mask = make_batch(gen, BATCH, control)
    loss = F.cross_entropy(model(tokens[:, :-1])[mask], tokens[:, 1:][mask])
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss)


def checkpoint(out, step, model, history):
    save_and_report("train_copy", out, step, model, CONFIG, history)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--control", action="store_true", help="second half independent of the first")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--save-every", type=int, default=25)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    eval_batch = make_batch(torch.Generator().manual_seed(a.seed + 1_000_003), EVAL_BATCH, a.control)
    model = GPTNeoXForCausalLM(CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    os.makedirs(a.out, exist_ok=True)
    history = [{"step": 0, "eval_accuracy": round(evaluate(model, eval_batch), 6)}]
    checkpoint(a.out, 0, model, history)
    losses = []
    for step in range(1, a.steps + 1):
        losses.append(train_step(model, opt, gen, a.control))
        if step % a.save_every == 0 or step == a.steps:
            history.append({"step": step, "loss": round(sum(losses) / len(losses), 6),
                            "eval_accuracy": round(evaluate(model, eval_batch), 6)})
            checkpoint(a.out, step, model, history)
            losses = []


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"train_copy: done in {time.time() - t0:.1f} s", flush=True)

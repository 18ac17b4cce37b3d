"""PyTorch peer for bench/train.ts: LoRA fine-tuning steps of a LLaMA-shaped model.

Same architecture, batch, sequence, rank and optimizer as lorakit's side; prints one JSON line
with tokens_per_second. Run by bench/train.ts (needs Debian's python3-torch); it sets the
environment that gives PyTorch its best speed on this machine (see ARCHITECTURE.md).
"""
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
C, L, I, V = cfg["hidden"], cfg["layers"], cfg["intermediate"], cfg["vocab"]
H, HKV = cfg["heads"], cfg["kv_heads"]
D = C // H
B, T, R, ALPHA = cfg["batch"], cfg["seq"], cfg["r"], cfg["alpha"]


class LoraLinear(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.base = nn.Linear(i, o, bias=False)
        self.base.weight.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(R, i))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(o, R))
        self.s = ALPHA / R

    def forward(self, x):
        return self.base(x) + (x @ self.A.t() @ self.B.t()) * self.s


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d), requires_grad=False)

    def forward(self, x):
        return self.w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


def rope_tables():
    inv = 1.0 / (10000 ** (torch.arange(0, D, 2).float() / D))
    f = torch.outer(torch.arange(T).float(), inv)
    e = torch.cat([f, f], -1)
    return e.cos(), e.sin()


COS, SIN = rope_tables()


def rot(x):
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return torch.cat([-x2, x1], -1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = LoraLinear(C, H * D), LoraLinear(C, HKV * D), LoraLinear(C, HKV * D), LoraLinear(H * D, C)
        self.g, self.u, self.d = LoraLinear(C, I), LoraLinear(C, I), LoraLinear(I, C)
        self.n1, self.n2 = RMSNorm(C), RMSNorm(C)

    def forward(self, x):
        h = self.n1(x)
        q = self.q(h).view(B, T, H, D).transpose(1, 2)
        k = self.k(h).view(B, T, HKV, D).transpose(1, 2)
        v = self.v(h).view(B, T, HKV, D).transpose(1, 2)
        q, k = q * COS + rot(q) * SIN, k * COS + rot(k) * SIN
        k = k.repeat_interleave(H // HKV, 1)
        v = v.repeat_interleave(H // HKV, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.o(o)
        h = self.n2(x)
        return x + self.d(F.silu(self.g(h)) * self.u(h))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.emb.weight.requires_grad_(False)
        self.blocks = nn.ModuleList([Block() for _ in range(L)])
        self.norm = RMSNorm(C)
        self.head = nn.Linear(C, V, bias=False)
        self.head.weight.requires_grad_(False)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x))


m = Model()
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
g = torch.Generator().manual_seed(1)
ids = torch.randint(0, V, (B, T + 1), generator=g)


def step():
    loss = F.cross_entropy(m(ids[:, :-1]).reshape(-1, V), ids[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()
    return loss.item()


for _ in range(cfg["warmup"]):
    step()
times = []
for _ in range(cfg["steps"]):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
med = times[len(times) // 2]
print(json.dumps({"seconds_per_step": med, "tokens_per_second": B * T / med, "torch": torch.__version__}))

"""Attention and its companions: Attention (opsets 23-25), RotaryEmbedding, LinearAttention, and
FlexAttention (domain ``ai.onnx.preview``, with its ``score_mod``/``prob_mod`` subgraphs)."""
from __future__ import annotations

import math

import torch

from .registry import Node, OpFn, converter, torch_dtype

_FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# ---- shared helpers ------------------------------------------------------------------------------------
def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, seq, heads·size) → (batch, heads, seq, size)."""
    b, s, hidden = x.shape
    return x.reshape(b, s, heads, hidden // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, seq, size) → (batch, seq, heads·size)."""
    b, h, s, d = x.shape
    return x.transpose(1, 2).reshape(b, s, h * d)


def _repeat_kv(node: Node, x: torch.Tensor, q_heads: int) -> torch.Tensor:
    """GQA/MQA: each K/V head serves a contiguous group of query heads ([h0, h0, h1, h1, …])."""
    kv_heads = x.shape[1]
    if kv_heads == q_heads:
        return x
    if q_heads % kv_heads:
        raise node.unsupported(f"{q_heads} query heads for {kv_heads} key/value heads (not a multiple)")
    return x.repeat_interleave(q_heads // kv_heads, dim=1)


def _scaled_scores(q: torch.Tensor, k: torch.Tensor, scale) -> torch.Tensor:
    """Q·Kᵀ·scale, with Q and K each scaled by sqrt(scale) first (in their dtype, like ONNX) to avoid
    overflow."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    root = q.new_tensor(math.sqrt(scale))
    return (q * root) @ (k * root).transpose(-1, -2)


def _precision(node: Node) -> torch.dtype | None:
    """The ``softmax_precision`` attribute as a torch dtype (None when absent)."""
    precision = node.attr("softmax_precision")
    if precision is None:
        return None
    dtype = torch_dtype(node, precision)
    if dtype not in _FLOAT_TYPES:
        raise node.unsupported(f"softmax_precision {precision}")
    return dtype


def _softmax_dtype(dtype: torch.dtype, precision: torch.dtype | None) -> torch.dtype:
    """softmax_precision exists to raise the precision of the softmax (float16 → float32); it never
    lowers it below the input's (so a float64 copy of the model stays float64 throughout)."""
    return dtype if precision is None else torch.promote_types(dtype, precision)


def _neg_inf_unless(allowed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The additive bias of a boolean 'may attend' tensor: 0 where allowed, -inf elsewhere (a select,
    not (1 - mask)·-inf, which gives NaN at allowed cells)."""
    return torch.where(allowed, like.new_zeros(()), like.new_full((), -math.inf))


# ---- Attention -------------------------------------------------------------------------------------------
def _pad_kv(mask: torch.Tensor, kv_len: int) -> torch.Tensor:
    """A mask shorter than the total key length (external cache) disallows the missing keys."""
    missing = kv_len - mask.shape[-1]
    if missing <= 0:
        return mask
    fill = False if mask.dtype == torch.bool else -math.inf
    return torch.cat([mask, mask.new_full((*mask.shape[:-1], missing), fill)], dim=-1)


def _attention_bias(like, q_len, kv_len, mask, causal, window, offset, nonpad):
    """The additive bias (broadcastable to (batch, heads, q, kv), None when nothing is masked): the
    attn_mask, the causal frontier and the sliding window — both bottom-right aligned, a query at
    in-block index i sits at absolute position i + offset — and the padding of nonpad_kv_seqlen.
    ``offset`` is an int, or a (batch,) tensor for an external cache."""
    bias = None
    if mask is not None:
        mask = _pad_kv(mask, kv_len)
        bias = _neg_inf_unless(mask, like) if mask.dtype == torch.bool else mask.to(like.dtype)
    left, right = window
    if causal or left >= 0 or right >= 0:
        i = torch.arange(q_len, device=like.device).unsqueeze(1)
        j = torch.arange(kv_len, device=like.device)
        if isinstance(offset, torch.Tensor):  # per batch: (batch, 1, q, kv)
            i = i + offset.reshape(-1, 1, 1, 1).to(i.device)
        else:
            i = i + offset
        allowed = torch.ones((), dtype=torch.bool, device=like.device)
        if causal:
            allowed = allowed & (j <= i)
        if left >= 0:
            allowed = allowed & (i - j <= left)
        if right >= 0:
            allowed = allowed & (j - i <= right)
        term = _neg_inf_unless(allowed, like)
        bias = term if bias is None else bias + term
    if nonpad is not None:
        valid = torch.arange(kv_len, device=like.device) < nonpad.reshape(-1, 1, 1, 1).to(like.device)
        term = _neg_inf_unless(valid, like)
        bias = term if bias is None else bias + term
    return bias


@converter("Attention")
def _attention(node: Node) -> OpFn:
    scale = node.attr("scale")
    causal = bool(node.attr("is_causal", 0))
    q_heads, kv_heads = node.attr("q_num_heads"), node.attr("kv_num_heads")
    softcap = float(node.attr("softcap", 0.0))
    mode = int(node.attr("qk_matmul_output_mode", 0))
    if mode not in (0, 1, 2, 3):
        raise node.unsupported(f"qk_matmul_output_mode={mode}")
    precision = _precision(node)
    window = (int(node.attr("left_window_size", -1)), int(node.attr("right_window_size", -1)))
    if min(window) < -1:
        raise node.unsupported(f"window sizes {window} (each must be -1 or nonnegative)")

    def attention(q, k, v, mask=None, past_key=None, past_value=None, nonpad=None):
        three_d = q.dim() == 3
        if three_d:
            if q_heads is None or kv_heads is None:
                raise node.unsupported("3-D inputs without q_num_heads and kv_num_heads")
            q, k, v = _split_heads(q, q_heads), _split_heads(k, kv_heads), _split_heads(v, kv_heads)
        if (past_key is None) != (past_value is None):
            raise node.unsupported("only one of past_key and past_value")
        if past_key is not None:
            k, v = torch.cat([past_key, k], dim=2), torch.cat([past_value, v], dim=2)
        present_key, present_value = k, v
        q_len, kv_len = q.shape[2], k.shape[2]
        if past_key is not None:
            offset = past_key.shape[2]
        elif nonpad is not None:
            offset = nonpad.reshape(-1) - q_len
        else:
            offset = 0
        bias = _attention_bias(q, q_len, kv_len, mask, causal, window, offset, nonpad)

        k, v = _repeat_kv(node, k, q.shape[1]), _repeat_kv(node, v, q.shape[1])
        scores = _scaled_scores(q, k, scale)
        capped = softcap * torch.tanh(scores / softcap) if softcap > 0 else scores  # before the mask
        logits = capped if bias is None else capped + bias
        probs_dtype = _softmax_dtype(logits.dtype, precision)
        if bias is None:
            probs = torch.softmax(logits.to(probs_dtype), dim=-1).to(q.dtype)
        else:
            # A query row with no attendable key gives zeros (not NaN); its logits are replaced before the
            # softmax so that no NaN reaches the backward pass either.
            dead = bias.amax(dim=-1, keepdim=True) == -math.inf
            safe = torch.where(dead, logits.new_zeros(()), logits)
            probs = torch.softmax(safe.to(probs_dtype), dim=-1).to(q.dtype)
            probs = torch.where(dead, probs.new_zeros(()), probs)
        y = probs @ v
        if three_d:
            y = _merge_heads(y)
        qk = (scores, capped, logits, probs)[mode]
        return (y, present_key, present_value, qk)[:max(node.outputs, 1)]

    return attention


# ---- RotaryEmbedding -------------------------------------------------------------------------------------
@converter("RotaryEmbedding")
def _rotary_embedding(node: Node) -> OpFn:
    interleaved = bool(node.attr("interleaved", 0))
    rotary_dim = int(node.attr("rotary_embedding_dim", 0))
    heads = node.attr("num_heads")

    def rotary(x, cos, sin, position_ids=None):
        if x.dim() == 4:  # (batch, heads, seq, size) → (batch, seq, heads, size)
            h = x.transpose(1, 2)
        elif x.dim() == 3:
            if not heads:
                raise node.unsupported("a 3-D input without num_heads")
            h = x.reshape(x.shape[0], x.shape[1], heads, -1)
        else:
            raise node.unsupported(f"a rank-{x.dim()} input")
        dim = rotary_dim or h.shape[-1]
        if position_ids is not None:  # caches indexed by position: (batch, seq, dim/2)
            cos, sin = cos[position_ids.long()], sin[position_ids.long()]
        if cos.shape[-1] != dim // 2 or sin.shape[-1] != dim // 2:
            raise node.unsupported(f"cos/sin caches of last dimension {cos.shape[-1]} for a rotary dimension of {dim}")
        cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)  # broadcast over heads
        rot, rest = h[..., :dim], h[..., dim:]
        x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if interleaved else rot.chunk(2, dim=-1)
        real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
        rot = torch.stack([real, imag], dim=-1).flatten(-2) if interleaved else torch.cat([real, imag], dim=-1)
        out = torch.cat([rot, rest], dim=-1)
        return out.reshape(x.shape) if x.dim() == 3 else out.transpose(1, 2)

    return rotary


# ---- LinearAttention -------------------------------------------------------------------------------------
_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def _per_head(x: torch.Tensor, kv_heads: int, d_k: int, name: str, node: Node) -> torch.Tensor:
    """decay (B, T, H) or (B, T, H·d_k), beta (B, T, H) or (B, T, 1) → (B, H or 1, T, 1 or d_k)."""
    b, t, last = x.shape
    if last == kv_heads or last == 1:  # one value per head (or shared by all heads)
        return x.reshape(b, t, last, 1).transpose(1, 2)
    if name == "decay" and last == kv_heads * d_k:
        return _split_heads(x, kv_heads)
    raise node.unsupported(f"a {name} input of shape {tuple(x.shape)}")


@converter("LinearAttention")
def _linear_attention(node: Node) -> OpFn:
    rule = node.attr("update_rule", "gated_delta")
    if rule not in _UPDATE_RULES:
        raise node.unsupported(f"update_rule '{rule}'")
    q_heads, kv_heads = node.attr("q_num_heads"), node.attr("kv_num_heads")
    if not q_heads or not kv_heads or q_heads <= 0 or kv_heads <= 0 or q_heads % kv_heads:
        raise node.unsupported(f"q_num_heads={q_heads}, kv_num_heads={kv_heads} (q must be a positive multiple of kv)")
    scale = float(node.attr("scale", 0.0))
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")

    def linear_attention(query, key, value, past_state=None, decay=None, beta=None):
        if gated != (decay is not None) or delta != (beta is not None):
            raise node.unsupported(f"update_rule '{rule}' with decay {'given' if decay is not None else 'omitted'} "
                                   f"and beta {'given' if beta is not None else 'omitted'}")
        work = torch.promote_types(query.dtype, torch.float32)  # the recurrence accumulates in float32 at least
        q = _split_heads(query, q_heads).to(work)
        k, v = _split_heads(key, kv_heads).to(work), _split_heads(value, kv_heads).to(work)
        b, _, t, d_k = q.shape
        d_v = v.shape[-1]
        # query head h reads the state of kv head h // group: group the query heads by kv head
        q = q.reshape(b, kv_heads, q_heads // kv_heads, t, d_k)
        state = q.new_zeros(b, kv_heads, d_k, d_v) if past_state is None else past_state.to(work)
        fade = _per_head(decay, kv_heads, d_k, "decay", node).to(work).exp() if gated else None
        rate = _per_head(beta, kv_heads, d_k, "beta", node).to(work) if delta else None
        factor = scale if scale != 0.0 else 1.0 / math.sqrt(d_k)
        outputs = []
        for i in range(t):  # the recurrence, one token at a time
            k_t, v_t = k[:, :, i], v[:, :, i]
            if gated:
                state = state * fade[:, :, i].unsqueeze(-1)
            if delta:  # write only what the state does not already return for k_t
                v_t = rate[:, :, i] * (v_t - (k_t.unsqueeze(-2) @ state).squeeze(-2))
            state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
            outputs.append(q[:, :, :, i] @ state)  # (B, H_kv, group, d_v)
        out = torch.stack(outputs, dim=3).reshape(b, q_heads, t, d_v) * factor
        present = state.to(query.dtype if past_state is None else past_state.dtype)
        return _merge_heads(out).to(query.dtype), present

    return linear_attention


# ---- FlexAttention (ai.onnx.preview) ---------------------------------------------------------------------
def _modifier(node: Node, key: str):
    """The score_mod / prob_mod subgraph (built by the runner as a ``Graph`` sub-module) as a function of
    the tensor and of the outer-scope values it reads, or None when absent."""
    body = node.attr(key)
    if body is None:
        return None
    if not hasattr(body, "run"):
        raise node.unsupported(f"a {key} subgraph the runner did not build")
    if len(body.input_names) != 1 or len(body.output_names) != 1:
        raise node.unsupported(f"a {key} subgraph without exactly one input and one output")
    return lambda x, scope: body.run([x], scope)[0].to(x.dtype)


@converter("FlexAttention", domain="ai.onnx.preview")
def _flex_attention(node: Node) -> OpFn:
    scale = node.attr("scale")
    precision = _precision(node)
    score_mod, prob_mod = _modifier(node, "score_mod"), _modifier(node, "prob_mod")

    def flex_attention(q, k, v, scope=None):
        if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
            raise node.unsupported("inputs that are not rank 4")
        k, v = _repeat_kv(node, k, q.shape[1]), _repeat_kv(node, v, q.shape[1])
        # The softmax runs in softmax_precision, by default in float32 at least (float64 for float64 inputs).
        work = _softmax_dtype(q.dtype, precision or torch.float32)
        scores = _scaled_scores(q, k, scale).to(work)
        if score_mod is not None:
            scores = score_mod(scores, scope)
        probs = torch.softmax(scores, dim=-1)
        if prob_mod is not None:
            probs = prob_mod(probs, scope)
        return (probs @ v.to(work)).to(v.dtype)

    return flex_attention

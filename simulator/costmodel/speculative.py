"""The price of a speculative decode step (docs/design.md §3.2): the target verifies each decoding request's
k draft tokens plus its last token in one prefill-like pass (k + 1 query tokens per request over its cached
context, through the same GEMMs and causal attention as a prefill chunk), after k draft steps, each priced as
`draft_cost` × the target's own decode step at the same batch (an EAGLE head or an MTP module is about one of
the target's layers; a draft model its share of the target's weights, since decode steps are memory-bound).
Iterations without decodes are priced as the target's."""

from __future__ import annotations

from simulator.costmodel.interface import BatchShape


class SpeculativeStage:
    """A stage's prices with its decodes made speculative (only what the engine calls: price, price_decode)."""

    __slots__ = ("stage", "num_tokens", "draft_share", "num_gpus")

    def __init__(self, stage, num_tokens: int, draft_cost: float):
        self.stage = stage
        self.num_tokens = num_tokens
        self.draft_share = num_tokens * draft_cost  # k draft steps
        self.num_gpus = stage.num_gpus

    def verify_shape(self, shape: BatchShape) -> BatchShape:
        """The shape with each decode replaced by a chunk of k + 1 tokens over its context."""
        d = shape.num_decode
        if not d:
            return shape
        q = self.num_tokens + 1
        ctx = shape.decode_context_tokens
        return BatchShape(
            num_prefill_tokens=shape.num_prefill_tokens + d * q,
            num_prefill_seqs=shape.num_prefill_seqs + d,
            prefill_attention_pairs=shape.prefill_attention_pairs + q * ctx + d * q * (q + 1) / 2,
            prefill_context_tokens=shape.prefill_context_tokens + ctx + d * q,
        )

    def price(self, shape: BatchShape) -> tuple[float, float, float]:
        if not shape.num_decode:
            return self.stage.price(shape)
        t, e, f = self.stage.price(self.verify_shape(shape))
        dt, de, df = self.stage.price_decode(shape.num_decode, shape.decode_context_tokens)
        s = self.draft_share
        return t + s * dt, e + s * de, f + s * df

    def price_decode(self, num_decode: int, context_tokens: int) -> tuple[float, float, float]:
        return self.price(BatchShape(num_decode=num_decode, decode_context_tokens=context_tokens))

    def iteration_time(self, shape: BatchShape) -> float:
        return self.price(shape)[0]

    def prime(self, num_tokens, num_seqs) -> None:
        """Nothing to price ahead: a speculative stage's shapes are not those counts."""

    def decode_attention_time(self, shape: BatchShape) -> float:
        """The verify step's decodes are prefill chunks: their attention is prefill attention; the draft's
        decode attention, at its share."""
        if not shape.num_decode:
            return 0.0
        return self.draft_share * self.stage.decode_attention_time(
            BatchShape(num_decode=shape.num_decode, decode_context_tokens=shape.decode_context_tokens)
        )


class SpeculativeReplicaCost:
    """A replica cost whose stages price decodes speculatively; everything else is the replica's."""

    def __init__(self, cost, num_tokens: int, draft_cost: float):
        self._cost = cost
        self.stages = [SpeculativeStage(s, num_tokens, draft_cost) for s in cost.stages]

    def __getattr__(self, name):
        return getattr(self._cost, name)

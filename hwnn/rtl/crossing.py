"""A stream from one clock domain to another, for slow streams such as the host link's beats.

:class:`StreamCrossing` carries one payload at a time with a two-phase handshake: the input
domain keeps the payload in a register and flips ``request``; the output domain sees the flip
through a two-flip-flop synchronizer, offers the payload and, once it is taken, flips
``acknowledge``, which comes back the same way. The payload's bits cross without a
synchronizer: they stay unchanged from the flip of ``request`` until the input domain has seen
the acknowledgement, at least two output-domain cycles after the output domain saw the flip.
So nothing in one domain waits on a path from the other within one cycle: the two clocks may
be unrelated (place and route times them apart), or the same.

It costs a register per payload bit, four synchronizer flip-flops and two flags, against the
memory and Gray-coded pointers of an asynchronous FIFO; a payload takes four cycles of each
domain.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["StreamCrossing"]


class StreamCrossing(wiring.Component):
    """Payloads of ``shape`` from ``i_stream`` (in clock domain ``i_domain``) to ``o_stream``
    (in ``o_domain``), in order, one at a time.

    A payload is offered from the third output-domain edge after the input-domain edge that
    took it (so it can be taken at the fourth); ``i_stream.ready`` rises again at the third
    input-domain edge after the output-domain edge that took it: eight cycles a payload when
    both domains are one. ``o_stream.valid`` and ``i_stream.ready`` come from flip-flops (the
    latter through an inverter). Both domains are reset together (at
    power-on); a reset of one alone may lose or repeat the payload in flight.

    Members
    -------
    i_stream : ``In(stream.Signature(shape))``, in ``i_domain``
    o_stream : ``Out(stream.Signature(shape))``, in ``o_domain``
    """

    def __init__(self, shape, *, i_domain="sync", o_domain="sync"):
        for name, domain in (("i_domain", i_domain), ("o_domain", o_domain)):
            if not isinstance(domain, str):
                raise TypeError(f"StreamCrossing {name} must be a clock domain name, "
                                f"not {domain!r}")
        self.i_domain, self.o_domain = i_domain, o_domain
        super().__init__({
            "i_stream": In(stream.Signature(shape)),
            "o_stream": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        held = Signal.like(self.i_stream.payload, name="held", reset_less=True)
        request, acknowledge = Signal(), Signal()
        request_seen, acknowledge_seen = Signal(), Signal()
        m.submodules.request_sync = FFSynchronizer(request, request_seen, o_domain=self.o_domain)
        m.submodules.acknowledge_sync = FFSynchronizer(acknowledge, acknowledge_seen,
                                                       o_domain=self.i_domain)
        # Both flags are flip-flops (no comparison on the way to the neighbours' enables): the
        # input is busy from taking a payload until its acknowledgement has come back, the
        # output valid while a payload has come that it has not acknowledged. (``busy``, not
        # a ``ready`` starting at 1: that flip-flop made YoWASP Yosys 0.70's ABC9 assert on
        # an OrangeCrab build.)
        busy, valid = Signal(), Signal()
        taken_in = self.i_stream.valid & ~busy
        taken_out = self.o_stream.ready & valid
        m.d.comb += [self.i_stream.ready.eq(~busy), self.o_stream.valid.eq(valid),
                     self.o_stream.payload.eq(held)]
        m.d[self.i_domain] += busy.eq(taken_in | (request != acknowledge_seen))
        m.d[self.o_domain] += valid.eq(~taken_out & (request_seen != acknowledge))
        with m.If(taken_in):
            m.d[self.i_domain] += [held.eq(self.i_stream.payload), request.eq(~request)]
        with m.If(taken_out):
            m.d[self.o_domain] += acknowledge.eq(~acknowledge)
        return m

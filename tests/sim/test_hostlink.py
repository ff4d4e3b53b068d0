# amaranth: UnusedElaboratable=no
"""The host link: the host code against the board top, in Amaranth's simulator and as
Verilog under cocotb (Icarus and Verilator) with the UART modelled in the testbench."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwnn.flow.generate import generate, load_design
from hwnn.host.link import BoardLink, LinkError, _BadReply, read_reply
from hwnn.host.protocol import crc8, pack_vector, request_frame, unpack_vector
from hwnn.quant.synthetic import random_cnn, sample_network
from hwnn.rtl.hostlink import BoardTop
from hwnn.rtl.uart import UartRx
from hwnn.sim.golden import run_network
from hwnn.sim.uart import SimulatedSerial, board_flash, simulate_board, simulated_board

DIVISOR = 4


def odd_cnn():
    """A CNN whose 3x3x3 uint3 image (81 bits) leaves 7 padding bits in its last byte."""
    return random_cnn(np.random.default_rng(4), (3, 3, 3), [
        ("conv2d", dict(out_channels=4, kernel=3, padding=1, weight_format="int4",
                        out_format="uint2", stage="thresholds")),
        ("dense", dict(out_features=3, weight_format="ternary", stage="accumulator")),
    ], input_format="uint3", name="odd_cnn")


#: The designs behind the link: dataflow ones, and a systolic design whose weights the board
#: loads from its flash after reset (the link's first request waits for them).
DESIGNS = {"int8": (lambda: sample_network("int8", seed=2), {"max_lanes": 16}),
           "binary": (lambda: sample_network("binary", seed=2), {"max_lanes": 16}),
           "odd_cnn": (odd_cnn, {"max_lanes": 16}),
           "loaded": (lambda: sample_network("int8", seed=2),
                      {"arch": "systolic", "array": "2x4", "batch": 2, "weights": "loaded"})}


@pytest.fixture(scope="module", params=list(DESIGNS))
def design(request, tmp_path_factory):
    network, options = DESIGNS[request.param]
    return load_design(generate(network(), tmp_path_factory.mktemp("d") / request.param,
                                **options))


def test_board_top_takes_flash_settings_exactly_when_the_accelerator_loads_weights(design):
    flash = {"offset": 0x100000, "divisor": 1, "wake_cycles": 8}
    loads = "load" in design.manifest
    message = (rf"^'{design.network.name}' loads its weights after reset: BoardTop needs flash "
               rf"\(the FlashReader's offset, divisor, wake_cycles\)$" if loads else
               r"^flash \(the FlashReader's offset, divisor, wake_cycles\) is for an "
               r"accelerator with a load stream$")
    with pytest.raises(ValueError, match=message):
        BoardTop(design.accelerator(), design.network, divisor=DIVISOR,
                 flash=None if loads else flash)


def test_frames_round_trip_every_format():
    for name in ("int8", "uint3", "ternary", "binary"):
        from hwnn.ir.formats import Format
        fmt = Format.parse(name)
        codes = fmt.level_value(np.random.default_rng(0).integers(0, fmt.levels, size=13))
        assert list(unpack_vector(pack_vector(codes, fmt), fmt, 13)) == list(codes)
    assert crc8(b"123456789") == 0xF4          # the CRC-8 check value of this polynomial


def test_board_link_runs_inputs_bit_exactly(design):
    link = BoardLink(simulated_board(design, divisor=DIVISOR), design)
    codes = np.load(design.path / "vectors" / "inputs.npy")[:3]
    assert np.array_equal(link.run(codes), run_network(design.network, codes))
    assert link.retried == 0


def test_a_link_on_a_clock_of_its_own_runs_inputs_bit_exactly(tmp_path):
    """As on a board with a PLL: the link (and its UART bit times) on a slower clock, not a
    multiple of the accelerator's; the weights loaded from the flash first."""
    design = load_design(generate(sample_network("int8", seed=3), tmp_path / "d", arch="systolic",
                                  array="2x4", batch=2, weights="loaded"))
    flash, model = board_flash(design)
    top = BoardTop(design.accelerator(), design.network, divisor=DIVISOR, flash=flash,
                   link_domain="board")
    link = BoardLink(SimulatedSerial(top, DIVISOR, flash=model, link_period=3.7e-8), design)
    codes = np.load(design.path / "vectors" / "inputs.npy")[:3]
    assert np.array_equal(link.run(codes), run_network(design.network, codes))
    assert link.retried == 0


def test_a_link_clock_is_given_exactly_for_a_link_domain_of_its_own(design):
    own = BoardTop(design.accelerator(), design.network, divisor=DIVISOR,
                   flash=board_flash(design)[0], link_domain="board")
    with pytest.raises(ValueError, match=r"^link_period is the period of a link in a domain "
                                         r"of its own: this top's link is in 'board', "
                                         r"link_period is None$"):
        SimulatedSerial(own, DIVISOR)
    with pytest.raises(TypeError, match=r"^link_domain must be a clock domain name, not 2$"):
        BoardTop(design.accelerator(), design.network, divisor=DIVISOR,
                 flash=board_flash(design)[0], link_domain=2)


class Flaky:
    """A transport that flips one bit of the ``victim``-th byte read."""

    def __init__(self, transport, victim):
        self.transport, self.victim, self.count = transport, victim, 0

    def write(self, data):
        return self.transport.write(data)

    def read(self, count=1):
        data = bytearray(self.transport.read(count))
        for index in range(len(data)):
            if self.count == self.victim:
                data[index] ^= 0x10
            self.count += 1
        return bytes(data)


def test_corrupted_and_lost_bytes_are_detected_and_retried(design):
    network = design.network
    port = simulated_board(design, divisor=DIVISOR)
    codes = np.load(design.path / "vectors" / "inputs.npy")[:2]
    out_fmt, out_n = network.output.format, network.out_features
    frame = bytearray(request_frame(7, codes[0], network.input.format))
    frame[3] ^= 0x01                                       # a corrupted byte
    port.write(frame)
    with pytest.raises(_BadReply, match="request CRC mismatch"):
        read_reply(port.read, 7, out_fmt, out_n)
    port.write(request_frame(8, codes[0], network.input.format)[:-2])   # a lost byte
    with pytest.raises(_BadReply, match="request incomplete"):
        read_reply(port.read, 8, out_fmt, out_n)
    # The link recovers; a corrupted reply byte is caught by its CRC and the request retried.
    link = BoardLink(Flaky(port, victim=4), design)
    assert np.array_equal(link.run(codes), run_network(network, codes))
    assert link.retried == 1


def test_no_answer_raises_after_the_retries(design):
    class Silent:
        def write(self, data):
            return len(data)

        def read(self, count=1):
            return b""

    link = BoardLink(Silent(), design, retries=2)
    with pytest.raises(LinkError, match=r"no valid answer after 3 tries: no reply \(timeout\)"):
        link.infer(np.load(design.path / "vectors" / "inputs.npy")[0])


def test_uart_drops_a_byte_with_a_bad_stop_bit():
    rx = UartRx(DIVISOR)
    seen = []

    async def hold(ctx, cycles):
        for _ in range(cycles):
            await ctx.tick()
            if ctx.get(rx.o_byte.valid):
                seen.append(ctx.get(rx.o_byte.payload))
            if ctx.get(rx.framing_error):
                seen.append("framing error")

    async def bench(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(5)
        for stop in (0, 1):
            for bit in [0, 1, 0, 1, 1, 0, 0, 1, 0, stop]:       # 0x4D, then the stop bit
                ctx.set(rx.rx, bit)
                await hold(ctx, DIVISOR)
            ctx.set(rx.rx, 1)
            await hold(ctx, 3 * DIVISOR)

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == ["framing error", 0x4D]


@pytest.mark.cocotb
@pytest.mark.parametrize("simulator, options, link_period_ns", [
    ("icarus", {"max_lanes": 16}, None), ("verilator", {"max_lanes": 16}, None),
    # Weights loaded from the (simulated) flash after reset, the link on a slower clock of
    # its own: as on the iCEBreaker at 48 MHz.
    ("icarus", {"arch": "systolic", "array": "2x4", "batch": 2, "weights": "loaded"}, 37)])
def test_board_top_verilog_matches_golden_over_its_uart(tmp_path, simulator, options,
                                                        link_period_ns):
    network = sample_network("int8", seed=5)
    design = load_design(generate(network, tmp_path / "d", **options))
    flash, model = board_flash(design)
    assert (flash is None) == ("weights" not in options)
    codes = np.load(design.path / "vectors" / "inputs.npy")[:4]
    fmt, out_bytes = network.input.format, -(-network.out_features
                                             * network.output.format.width // 8)
    reply = 4 + out_bytes
    corrupted = bytearray(request_frame(4, codes[0], fmt))
    corrupted[2] ^= 0x80
    exchanges = [(request_frame(seq, row, fmt), reply) for seq, row in enumerate(codes[:2])]
    exchanges += [(bytes(corrupted), 4), (request_frame(5, codes[1], fmt)[:-1], 4)]
    exchanges += [(request_frame(6 + seq, row, fmt), reply)
                  for seq, row in enumerate(codes[2:])]
    top = BoardTop(design.accelerator(), network, divisor=DIVISOR, flash=flash,
                   link_domain="sync" if link_period_ns is None else "board")
    received = simulate_board(top, exchanges, divisor=DIVISOR, simulator=simulator,
                              work=tmp_path / simulator, flash=model,
                              link_period_ns=link_period_ns)
    stream = iter(received)

    def read(count):
        return bytes(next(stream) for _ in range(count))

    expected = run_network(network, codes)
    for seq, index in ((0, 0), (1, 1)):
        assert list(read_reply(read, seq, network.output.format,
                               network.out_features)) == list(expected[index])
    for seq, reason in ((4, "request CRC mismatch"), (5, "request incomplete")):
        with pytest.raises(_BadReply, match=reason):
            read_reply(read, seq, network.output.format, network.out_features)
    for seq, index in ((6, 2), (7, 3)):
        assert list(read_reply(read, seq, network.output.format,
                               network.out_features)) == list(expected[index])


def test_run_board_command_on_the_simulated_board(capsys, tmp_path):
    from hwnn.cli import main
    path = generate(sample_network("ternary", seed=1), tmp_path / "d", max_lanes=8)
    assert main(["run-board", str(path), "--simulate"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "simulated board: 32/32 inputs match the golden model" in out
    # Progress as the inputs go (a line at each tenth of the way when not on a terminal).
    progress = [line for line in out.splitlines() if line.endswith("/32 inputs")]
    assert len(progress) == 10 and progress[-1] == "  32/32 inputs"
    assert main(["run-board", str(path)]) == 2
    assert "Give either --port (a board) or --simulate" in capsys.readouterr().err
    assert main(["run-board", str(path), "--port", str(tmp_path / "no-such-tty")]) == 2
    assert "Cannot open serial port" in capsys.readouterr().err
